"""Concurrent streaming load with aiohttp: chunks received per second and time to first token.

TTFT is measured to the first SSE event whose delta carries non-empty content, not to the
first byte: vLLM opens each stream with an empty role-only chunk, and a proxy that sends
headers early but buffers tokens must not look fast. Only events up to that one are parsed
as JSON; the rest are just counted, to keep this client's CPU cost low.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

from bench.measures import StreamResult, percentile
from bench.servers import Target


@dataclass(frozen=True)
class _StreamOutcome:
    ttft_s: float | None
    chunks: int
    complete: bool


def run(target: Target, body: bytes, streams: int, seconds: float) -> StreamResult:
    """Keep `streams` streams open at once, each worker opening its next stream as soon as
    one ends, until `seconds` have passed; the streams still open then run to their end and
    count too, so the duration covers every chunk counted."""
    return asyncio.run(_run(target, body, streams, seconds))


async def _run(target: Target, body: bytes, streams: int, seconds: float) -> StreamResult:
    outcomes: list[_StreamOutcome] = []
    headers = target.headers()
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            outcomes.append(await _one_stream(session, target.chat_url, body, headers))

    connector = aiohttp.TCPConnector(limit=streams)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(streams)))
        duration = time.perf_counter() - started
    ttfts = [outcome.ttft_s for outcome in outcomes if outcome.ttft_s is not None]
    return StreamResult(
        streams=len(outcomes),
        incomplete=sum(not outcome.complete for outcome in outcomes),
        chunks=sum(outcome.chunks for outcome in outcomes),
        duration_s=duration,
        ttft_median_ms=percentile(ttfts, 50) * 1e3,
        ttft_p99_ms=percentile(ttfts, 99) * 1e3,
    )


async def _one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> _StreamOutcome:
    sent = time.perf_counter()
    ttft: float | None = None
    chunks = 0
    done = False
    try:
        async with session.post(url, data=body, headers=headers) as reply:
            if reply.status != 200:
                await reply.read()
                return _StreamOutcome(None, 0, False)
            pending = b""
            async for data in reply.content.iter_any():
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        continue
                    chunks += 1
                    if ttft is None and _carries_content(payload):
                        ttft = time.perf_counter() - sent
    except aiohttp.ClientError:
        return _StreamOutcome(ttft, chunks, False)
    return _StreamOutcome(ttft, chunks, done)


def _carries_content(payload: bytes) -> bool:
    choices = orjson.loads(payload).get("choices") or []
    return any((choice.get("delta") or {}).get("content") for choice in choices)
