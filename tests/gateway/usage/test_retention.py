"""Old usage records pruned in batches, the daily rows kept: SQLite and Postgres delete them,
Redis expires each day's records hash after `usage.record_retention_days`."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.retention import PRUNE_BATCH, RecordRetention
from gateway.usage.sqlite_backend import ADDED_COLUMNS, SqliteUsageBackend
from tests.fixtures.redis import OwnRedis
from tests.gateway.usage.conftest import DAY_1, DAY_3, LedgerStore, noon
from tests.gateway.usage.test_ledger import a_record


async def test_records_before_the_cutoff_go_and_the_daily_rows_stay(store: LedgerStore) -> None:
    if store.name == "redis":
        pytest.skip("Redis expires records by itself (below)")
    backend = store.open_backend()
    old = [a_record(f"old{n}", 1, 1) for n in range(PRUNE_BATCH + 7)]
    new = [replace(a_record(f"new{n}", 2, 2), time=noon(DAY_3)) for n in range(3)]
    try:
        await backend.write(old + new)
        retention = RecordRetention(backend, retention_days=1)
        assert retention.cutoff_day(noon(DAY_3)) == "2030-01-02"
        assert await retention.prune(noon(DAY_3)) == len(old)  # two batches
        assert await retention.prune(noon(DAY_3)) == 0
        kept = await backend.read_records(RecordFilter("t1"))
        rows = await backend.read(UsageFilter(tenant_id="t1"))
    finally:
        await backend.close()
    assert sorted(record.record_id for record in kept) == sorted(r.record_id for r in new)
    assert sum(counts.requests for _, counts in rows) == len(old) + len(new)


async def test_redis_keeps_a_days_records_for_the_retention_set(own_redis: OwnRedis) -> None:
    prefix = f"retention-{uuid.uuid4().hex}:"
    backend = RedisUsageBackend(own_redis.url, prefix, record_retention_s=2 * 86400)
    client = aioredis.from_url(own_redis.url)
    try:
        await backend.write([a_record("r1", 3, 4)])
        ttl = await client.ttl(f"{prefix}usage-records:{DAY_1}:t1")
        assert 86400 < ttl <= 2 * 86400
        assert await backend.prune_records(DAY_3, PRUNE_BATCH) == 0
    finally:
        await client.delete(*[key async for key in client.scan_iter(f"{prefix}*")])
        await client.aclose()
        await backend.close()


async def test_a_sqlite_file_from_before_the_new_fields_gains_their_columns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    backend = SqliteUsageBackend(path)
    await backend.close()
    with sqlite3.connect(path) as db:  # the table as it shipped before these fields
        for name in ADDED_COLUMNS:
            db.execute(f"ALTER TABLE usage_records DROP COLUMN {name}")
    backend = SqliteUsageBackend(path)
    record = replace(a_record("r1", 1, 1), finish_reason="length", adapter="tenant-a")
    try:
        await backend.write([record])
        assert await backend.read_records(RecordFilter("t1")) == [record]
    finally:
        await backend.close()
