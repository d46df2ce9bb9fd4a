"""Side-by-side benchmark of three paths to one upstream: direct, our gateway, LiteLLM's proxy.

Run `python -m bench.run` (or `--quick` for a smoke run); see bench/run.py for what it measures
and where the results go.
"""
