"""Time the usage ledger: what it adds to a request's own path, its log's fsyncs, and a flush
of N records per store.

    .venv/bin/python -m bench.ledger_flush [--redis-url redis://127.0.0.1:6379] [--dir DIR]

Request path: a whole answer (start and body) and a 16-event stream sent through the request's
`Delivery` and `finished`, with the log's group commit running, against the same messages sent
without the ledger; the difference is what the ledger adds to a request at c=1, all of it
synchronous (two or three os.write into the page cache, no store round trip, no fsync). The
fsync figures are the group commit thread's fdatasync calls meanwhile. A flush's time is what
the background task waits: reading the closed log segment (in a thread) and one store write
(the SQLite write runs in a thread; the Redis figure includes the scripts' time in Redis).
Keys are written under a fresh prefix and deleted afterwards; the SQLite file and the log are
in a temporary directory (under --dir: put it on the disk the gateway's log will use).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from unittest import mock

import redis.asyncio as aioredis

from gateway.core.asgi import Message, Send
from gateway.core.context import RequestContext
from gateway.settings import UsageSettings
from gateway.usage.backend import UsageBackend
from gateway.usage.ledger import UsageLedger
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from gateway.usage.wal import WriteAheadLog

ROW_COUNTS = (10, 100, 1000, 5000)
FLUSHES = 20
REQUESTS = 20_000
REPEATS = 5
STREAM_EVENTS = 16
FSYNC_INTERVAL_S = UsageSettings().wal_fsync_interval_s  # the gateway's default
USAGE = {"prompt_tokens": 120, "completion_tokens": 16, "total_tokens": 136}
START: Message = {"type": "http.response.start", "status": 200, "headers": []}
EVENT: Message = {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True}
BODY: Message = {"type": "http.response.body", "body": b"{}", "more_body": False}


async def _sent(message: Message) -> None:
    pass


def _request(stream: bool) -> RequestContext:
    return RequestContext(
        uuid.uuid4().hex,
        endpoint="/v1/chat/completions",
        stream=stream,
        tenant_id="tenant_1",
        key_id="key_1",
        public_model="base",
        upstream_model="base",
        replica="http://127.0.0.1:8000",
        status=200,
    )


async def whole(ledger: UsageLedger | None) -> None:
    ctx = _request(stream=False)
    delivery = ledger.delivery(ctx, _sent) if ledger else None
    send: Send = delivery or _sent
    ctx.usage = USAGE  # read from the body before it is sent
    await send(START)
    await send(BODY)
    if ledger and delivery:
        ledger.finished(delivery, 0.01)


async def stream(ledger: UsageLedger | None) -> None:
    ctx = _request(stream=True)
    delivery = ledger.delivery(ctx, _sent) if ledger else None
    send: Send = delivery or _sent
    await send(START)
    for event in range(STREAM_EVENTS):
        if event == STREAM_EVENTS - 1:
            ctx.usage = USAGE  # the usage chunk, before [DONE]
        await send(EVENT)
    await send(BODY)
    if ledger and delivery:
        ledger.finished(delivery, 0.01)


async def per_request_us(
    request: Callable[[UsageLedger | None], Awaitable[None]], ledger: UsageLedger | None
) -> float:
    """Microseconds per request, the best of REPEATS runs of REQUESTS."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(REQUESTS):
            await request(ledger)
        best = min(best, time.perf_counter() - started)
        if ledger is not None:
            await ledger.flush()  # keeps the log (and the store's file) from growing
    return best / REQUESTS * 1e6


class FsyncTimes:
    """os.fdatasync, timed: what the group commit thread spends, off the requests' path."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._fdatasync = os.fdatasync

    def __call__(self, fd: int) -> None:
        started = time.perf_counter()
        self._fdatasync(fd)
        self.seconds.append(time.perf_counter() - started)


async def request_path(directory: Path) -> None:
    fsyncs = FsyncTimes()
    ledger = UsageLedger(
        SqliteUsageBackend(directory / "path.db"),
        WriteAheadLog(directory / "path-wal", FSYNC_INTERVAL_S),
    )
    await ledger.start()
    print("| request | without ledger (µs) | with ledger (µs) | added (µs) |\n|---|---:|---:|---:|")
    with mock.patch("os.fdatasync", fsyncs):
        for name, request in (("whole answer", whole), (f"{STREAM_EVENTS}-event stream", stream)):
            bare = await per_request_us(request, None)
            with_ledger = await per_request_us(request, ledger)
            print(f"| {name} | {bare:.2f} | {with_ledger:.2f} | {with_ledger - bare:.2f} |")
    await ledger.close()
    times = sorted(fsyncs.seconds)
    if times:
        median, p99 = statistics.median(times), times[int(len(times) * 0.99)]
        print(
            f"\ngroup commit: {len(times)} fdatasync calls, median {median * 1e3:.3f} ms, "
            f"p99 {p99 * 1e3:.3f} ms, max {times[-1] * 1e3:.3f} ms (in its thread)"
        )


async def flush_ms(backend: UsageBackend, directory: Path, records: int) -> float:
    """Median milliseconds of a flush of `records` requests of 50 tenants (a key each)."""
    ledger = UsageLedger(backend, WriteAheadLog(directory, FSYNC_INTERVAL_S))
    await ledger.start()
    times = []
    for _ in range(FLUSHES):
        for number in range(records):
            ctx = _request(stream=False)
            tenant = number % 50
            ctx.tenant_id, ctx.key_id, ctx.usage = f"tenant_{tenant}", f"key_{tenant}", USAGE
            ledger.finished(ledger.delivery(ctx, _sent), 0.01)
        started = time.perf_counter()
        await ledger.flush()
        times.append((time.perf_counter() - started) * 1000)
    await ledger.close()
    return statistics.median(times)


async def main(redis_url: str, log_disk: Path | None) -> None:
    prefix = f"bench-ledger-{uuid.uuid4().hex}:"
    with tempfile.TemporaryDirectory(dir=log_disk) as temporary:
        directory = Path(temporary)
        await request_path(directory)
        print("\n| records per flush | Redis (ms) | SQLite (ms) |\n|---:|---:|---:|")
        database = directory / "ledger.db"
        for records in ROW_COUNTS:
            on_redis = await flush_ms(
                RedisUsageBackend(redis_url, prefix), directory / "redis-wal", records
            )
            on_sqlite = await flush_ms(
                SqliteUsageBackend(database), directory / "sqlite-wal", records
            )
            print(f"| {records} | {on_redis:.2f} | {on_sqlite:.2f} |")
    async with aioredis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--dir", type=Path, help="where the log goes (its disk's fsync matters); default: $TMPDIR"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.redis_url, arguments.dir))
