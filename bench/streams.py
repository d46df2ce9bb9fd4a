"""Concurrent streaming load with aiohttp: chunks per second, time to first token and the gaps
between tokens.

TTFT is measured to the first SSE event whose delta carries non-empty content, not to the
first byte: vLLM opens each stream with an empty role-only chunk (a Responses stream with its
created/in_progress events), and a proxy that sends headers early but buffers tokens must not
look fast. A `Shape` says how a surface's stream shows content and its end. Only events up to
that one are parsed as JSON (and a Responses stream's events searched for its end); the rest
are just counted and timed, to keep this client's CPU cost low. Every event
read in one piece gets that read's time, so events that arrive together have no gap between
them, as in `vllm bench serve`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import orjson

from bench.measures import StreamResult, percentile
from bench.servers import Target

# Where several lanes share the streams: one path and the body it gets (e.g. one per tenant).
Lane = tuple[Target, bytes]


@dataclass(frozen=True)
class Shape:
    """A surface's streams: its path, which data carries content, which one ends it."""

    path: str
    carries_content: Callable[[bytes], bool]
    is_end: Callable[[bytes], bool]


def _chat_content(payload: bytes) -> bool:
    choices = orjson.loads(payload).get("choices") or []
    return any((choice.get("delta") or {}).get("content") for choice in choices)


def _responses_content(payload: bytes) -> bool:
    event = orjson.loads(payload)
    return event.get("type") == "response.output_text.delta" and bool(event.get("delta"))


def _responses_end(payload: bytes) -> bool:
    return b'"type":"response.completed"' in payload or b'"type":"response.incomplete"' in payload


CHAT = Shape("/v1/chat/completions", _chat_content, lambda payload: False)  # ends with [DONE]
RESPONSES = Shape("/v1/responses", _responses_content, _responses_end)


@dataclass(frozen=True)
class _StreamOutcome:
    ttft_s: float | None
    chunks: int
    gaps_s: list[float]
    complete: bool


def run(
    target: Target, body: bytes, streams: int, seconds: float, shape: Shape = CHAT
) -> StreamResult:
    """Keep `streams` streams open at once, each worker opening its next stream as soon as
    one ends, until `seconds` have passed; the streams still open then run to their end and
    count too, so the duration covers every chunk counted."""
    return run_lanes([(target, body)], streams, seconds, shape)


def run_lanes(
    lanes: Sequence[Lane], streams: int, seconds: float, shape: Shape = CHAT
) -> StreamResult:
    """`run`, with worker i sending lane i modulo the number of lanes: mixed traffic (several
    tenants or adapters) measured as one load."""
    return asyncio.run(_run(lanes, streams, seconds, shape))


async def _run(lanes: Sequence[Lane], streams: int, seconds: float, shape: Shape) -> StreamResult:
    outcomes: list[_StreamOutcome] = []
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, lane: Lane) -> None:
        target, body = lane
        headers = target.headers()
        while time.perf_counter() < deadline:
            url = target.base_url + shape.path
            outcomes.append(await _one_stream(session, url, body, headers, shape))

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
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], shape: Shape
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
                    if shape.is_end(payload):
                        done = True
                    if ttft is not None:
                        gaps.append(now - last_event)
                        last_event = now
                    elif shape.carries_content(payload):
                        ttft = now - sent
                        last_event = now
    except aiohttp.ClientError:
        return _StreamOutcome(ttft, chunks, gaps, False)
    return _StreamOutcome(ttft, chunks, gaps, done)
