"""Concurrent streaming load with aiohttp: chunks per second, time to first token and the gaps
between tokens.

TTFT is measured to the first SSE event whose delta carries non-empty content, not to the
first byte: vLLM opens each stream with an empty role-only chunk, and a proxy that sends
headers early but buffers tokens must not look fast. Only events up to that one are parsed
as JSON; the rest are just counted and timed, to keep this client's CPU cost low. Every event
read in one piece gets that read's time, so events that arrive together have no gap between
them, as in `vllm bench serve`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import orjson

from bench.measures import StreamResult, percentile
from bench.servers import Target

# Where several lanes share the streams: one path and the body it gets (e.g. one per tenant).
Lane = tuple[Target, bytes]


@dataclass(frozen=True)
class _StreamOutcome:
    ttft_s: float | None
    chunks: int
    gaps_s: list[float]
    complete: bool


def run(target: Target, body: bytes, streams: int, seconds: float) -> StreamResult:
    """Keep `streams` streams open at once, each worker opening its next stream as soon as
    one ends, until `seconds` have passed; the streams still open then run to their end and
    count too, so the duration covers every chunk counted."""
    return run_lanes([(target, body)], streams, seconds)


def run_lanes(lanes: Sequence[Lane], streams: int, seconds: float) -> StreamResult:
    """`run`, with worker i sending lane i modulo the number of lanes: mixed traffic (several
    tenants or adapters) measured as one load."""
    return asyncio.run(_run(lanes, streams, seconds))


async def _run(lanes: Sequence[Lane], streams: int, seconds: float) -> StreamResult:
    outcomes: list[_StreamOutcome] = []
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, lane: Lane) -> None:
        target, body = lane
        headers = target.headers()
        while time.perf_counter() < deadline:
            outcomes.append(await _one_stream(session, target.chat_url, body, headers))

    connector = aiohttp.TCPConnector(limit=streams)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, lanes[i % len(lanes)]) for i in range(streams)))
        duration = time.perf_counter() - started
    ttfts = [outcome.ttft_s for outcome in outcomes if outcome.ttft_s is not None]
    gaps = [gap for outcome in outcomes for gap in outcome.gaps_s]
    return StreamResult(
        streams=len(outcomes),
        incomplete=sum(not outcome.complete for outcome in outcomes),
        chunks=sum(outcome.chunks for outcome in outcomes),
        duration_s=duration,
        ttft_median_ms=percentile(ttfts, 50) * 1e3,
        ttft_p99_ms=percentile(ttfts, 99) * 1e3,
        itl_median_ms=percentile(gaps, 50) * 1e3,
        itl_p99_ms=percentile(gaps, 99) * 1e3,
    )


async def _one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> _StreamOutcome:
    sent = time.perf_counter()
    ttft: float | None = None
    last_event = sent
    gaps: list[float] = []
    chunks = 0
    done = False
    try:
        async with session.post(url, data=body, headers=headers) as reply:
            if reply.status != 200:
                await reply.read()
                return _StreamOutcome(None, 0, [], False)
            pending = b""
            async for data in reply.content.iter_any():
                now = time.perf_counter()
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
                    if ttft is not None:
                        gaps.append(now - last_event)
                        last_event = now
                    elif _carries_content(payload):
                        ttft = now - sent
                        last_event = now
    except aiohttp.ClientError:
        return _StreamOutcome(ttft, chunks, gaps, False)
    return _StreamOutcome(ttft, chunks, gaps, done)


def _carries_content(payload: bytes) -> bool:
    choices = orjson.loads(payload).get("choices") or []
    return any((choice.get("delta") or {}).get("content") for choice in choices)
