"""Plain (non-streaming) load with aiohttp, for machines without wrk.

Its own CPU cost is far higher than wrk's, so on a small machine it caps the RPS it can show;
the report names the client that was used.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.measures import PlainResult, percentile
from bench.servers import Target


def run(target: Target, body: bytes, concurrency: int, seconds: int) -> PlainResult:
    """Keep `concurrency` requests in flight for `seconds`."""
    return asyncio.run(_run(target, body, concurrency, seconds))


async def _run(target: Target, body: bytes, concurrency: int, seconds: int) -> PlainResult:
    latencies: list[float] = []
    errors = 0
    headers = target.headers()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                async with session.post(target.chat_url, data=body, headers=headers) as reply:
                    await reply.read()
                    failed = reply.status != 200
            except aiohttp.ClientError:
                failed = True
            latencies.append(time.perf_counter() - sent)
            errors += failed

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return PlainResult(
        client="aiohttp",
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        duration_s=time.perf_counter() - started,
        median_ms=percentile(latencies, 50) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
    )
