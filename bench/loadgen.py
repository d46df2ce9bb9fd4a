"""Plain-request load: wrk where installed, else the aiohttp client (the report says which)."""

from __future__ import annotations

from bench import aiohttp_load, wrk_load
from bench.measures import PlainResult
from bench.servers import Target


def client_name() -> str:
    return wrk_load.version() if wrk_load.available() else "aiohttp (wrk not installed)"


def plain_load(target: Target, body: bytes, concurrency: int, seconds: int) -> PlainResult:
    """Keep `concurrency` requests in flight for `seconds` (whole seconds: wrk's unit)."""
    client = wrk_load if wrk_load.available() else aiohttp_load
    return client.run(target, body, concurrency, seconds)
