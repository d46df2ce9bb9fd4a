"""Content safety: per-tenant policies enforced on the input, and on the output as it streams.

`engine.SafetyEngine` picks a request's policy; its `runtime.PolicyRuntime` checks the input
and hands out the `output_guard.OutputGuard` for the answer. Nothing is imported here, so the
settings can load `policy` without the rest of the package.
"""
