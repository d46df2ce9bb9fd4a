"""Time the usage ledger: `record` on the hot path, and a flush of N distinct rows per store.

    .venv/bin/python -m bench.ledger_flush [--redis-url redis://127.0.0.1:6379]

A flush's time is what the background task waits (the SQLite write runs in a thread); the
Redis figure includes the scripts' own time in Redis. Keys are written under a fresh prefix
and deleted afterwards; the SQLite file is a temporary one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from gateway.usage.backend import UsageBackend
from gateway.usage.ledger import UsageLedger
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend

ROW_COUNTS = (10, 100, 1000)
FLUSHES = 20


def record_ns(ledger: UsageLedger) -> float:
    """Nanoseconds per `record` of an existing row (the common case: a busy tenant and key)."""
    calls = 200_000
    seconds = min(
        timeit.repeat(
            lambda: ledger.record("tenant_1", "key_1", "base", 120, 40, 200), number=calls, repeat=5
        )
    )
    return seconds / calls * 1e9


async def flush_ms(backend: UsageBackend, rows: int) -> float:
    """Median milliseconds of a flush of `rows` distinct rows."""
    ledger = UsageLedger(backend)
    ledger.record("warm", "up", "base", 1, 1, 200)
    await ledger.flush()
    times = []
    for _ in range(FLUSHES):
        for row in range(rows):
            ledger.record(f"tenant_{row % 50}", f"key_{row}", "base", 120, 40, 200)
        started = time.perf_counter()
        await ledger.flush()
        times.append((time.perf_counter() - started) * 1000)
    await ledger.close()
    return statistics.median(times)


async def main(redis_url: str) -> None:
    prefix = f"bench-ledger-{uuid.uuid4().hex}:"
    with tempfile.TemporaryDirectory() as directory:
        database = Path(directory) / "ledger.db"
        ledger = UsageLedger(SqliteUsageBackend(database))
        print(f"record: {record_ns(ledger):.0f} ns per call")
        await ledger.close()
        print("| rows per flush | Redis (ms) | SQLite (ms) |\n|---:|---:|---:|")
        for rows in ROW_COUNTS:
            on_redis = await flush_ms(RedisUsageBackend(redis_url, prefix), rows)
            on_sqlite = await flush_ms(SqliteUsageBackend(database), rows)
            print(f"| {rows} | {on_redis:.2f} | {on_sqlite:.2f} |")
    async with aioredis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    asyncio.run(main(parser.parse_args().redis_url))
