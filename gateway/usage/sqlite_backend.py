"""The ledger in the embedded SQLite file, beside the key store, in tables of its own.

A flush is one transaction: an UPSERT per row, and the writer's applied batch sequence, so a
retried batch is skipped exactly as in Redis. The calls run in a worker thread: a write may
wait up to `busy_timeout_s` for another process's write lock, and the event loop must not.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from gateway.sqlite import SqliteFile
from gateway.store_health import StoreHealth, guarded
from gateway.usage.backend import Batch, UsageFilter
from gateway.usage.counts import COUNTER_FIELDS, UsageCounts, UsageKey

# A writer's applied sequence is only needed while it may retry; rows of writers silent this
# long are dropped (one per process start, so few in any case).
WRITER_RETENTION_S = 7 * 86400

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS usage_daily (
    day TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    PRIMARY KEY (day, tenant_id, key_id, model)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_daily_by_tenant ON usage_daily (tenant_id, day);
CREATE TABLE IF NOT EXISTS usage_writers (
    writer_id TEXT PRIMARY KEY,
    applied_sequence INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
COMMIT;
"""

_COLUMNS = ", ".join(COUNTER_FIELDS)
_ADD_COUNTERS = ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTER_FIELDS)
UPSERT_ROW = (
    f"INSERT INTO usage_daily (day, tenant_id, key_id, model, {_COLUMNS}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' * len(COUNTER_FIELDS))}) "
    f"ON CONFLICT (day, tenant_id, key_id, model) DO UPDATE SET {_ADD_COUNTERS}"
)
SET_APPLIED = (
    "INSERT INTO usage_writers VALUES (?, ?, ?) ON CONFLICT (writer_id) DO UPDATE SET "
    "applied_sequence = excluded.applied_sequence, updated_at = excluded.updated_at"
)


@guarded
class SqliteUsageBackend:
    def __init__(self, path: Path, busy_timeout_s: float = 5.0, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("usage", budget_s)
        self._file = SqliteFile(path, busy_timeout_s, SCHEMA)

    async def write(self, batches: list[Batch]) -> None:
        await asyncio.to_thread(self._write, batches)

    def _write(self, batches: list[Batch]) -> None:
        now = time.time()
        with self._file.transaction() as db:
            for batch in batches:
                if _applied_sequence(db, batch.writer_id) >= batch.sequence:
                    continue
                rows = [(*key, *counts.values()) for key, counts in batch.counts.items()]
                db.executemany(UPSERT_ROW, rows)
                db.execute(SET_APPLIED, (batch.writer_id, batch.sequence, now))
            db.execute(
                "DELETE FROM usage_writers WHERE updated_at < ?", (now - WRITER_RETENTION_S,)
            )

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        return await asyncio.to_thread(self._read, usage_filter)

    def _read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        conditions = [
            ("tenant_id = ?", usage_filter.tenant_id),
            ("key_id = ?", usage_filter.key_id),
            ("model = ?", usage_filter.model),
            ("day >= ?", usage_filter.first_day),
            ("day <= ?", usage_filter.last_day),
        ]
        given = [(condition, value) for condition, value in conditions if value is not None]
        where = " AND ".join(condition for condition, _ in given) or "1"
        query = f"SELECT day, tenant_id, key_id, model, {_COLUMNS} FROM usage_daily WHERE {where}"
        rows = self._file.read(query, tuple(value for _, value in given))
        return [(UsageKey(*row[:4]), UsageCounts(*row[4:])) for row in rows]

    async def ping(self) -> None:
        self._file.read("SELECT 1")

    async def close(self) -> None:
        self._file.close()


def _applied_sequence(db: sqlite3.Connection, writer_id: str) -> int:
    row = db.execute(
        "SELECT applied_sequence FROM usage_writers WHERE writer_id = ?", (writer_id,)
    ).fetchone()
    return row[0] if row else 0
