"""Responses API state the gateway keeps itself, per tenant: stored responses (`store: true`),
the conversations `previous_response_id` continues, and background responses.

vLLM's own response store is one process's memory, off by default, never evicted and shared
by every tenant of a replica; the gateway never lets a request reach it (it sends
`store: false`) and keeps responses in its own store instead, so that they outlive a replica
and any instance can answer for them.
"""
