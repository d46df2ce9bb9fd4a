"""The ledger in the embedded SQLite file, beside the key store, in tables of its own.

`usage_records` holds one row per request, keyed by its record id; `usage_daily` the counts per
(day, tenant, key, model). A write is one transaction: each record is inserted unless its id is
there already, and only the inserted ones are added to the daily rows, so a record written
twice counts once. The calls run in a worker thread: a write may wait up to `busy_timeout_s`
for another process's write lock, and the event loop must not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.sqlite import BUSY_TIMEOUT_S, SqliteFile, sqlite_file
from gateway.store_health import StoreHealth, guarded
from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.counts import COUNTER_FIELDS, UsageCounts, UsageKey
from gateway.usage.records import RECORD_FIELDS, UsageRecord, daily_rows

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
CREATE TABLE IF NOT EXISTS usage_records (
    record_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream_model TEXT,
    replica TEXT,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms REAL,
    ttft_ms REAL,
    estimated INTEGER NOT NULL,
    aborted INTEGER NOT NULL,
    day TEXT NOT NULL,
    base_model TEXT,
    adapter TEXT,
    finish_reason TEXT,
    safety_action TEXT
);
CREATE INDEX IF NOT EXISTS usage_records_by_tenant ON usage_records (tenant_id, day);
CREATE INDEX IF NOT EXISTS usage_records_by_request ON usage_records (request_id);
CREATE INDEX IF NOT EXISTS usage_records_by_day ON usage_records (day);
COMMIT;
"""

# Record fields added after the table first shipped: a file made before gets them as columns.
ADDED_COLUMNS = dict.fromkeys(("base_model", "adapter", "finish_reason", "safety_action"), "TEXT")
_COUNTERS = ", ".join(COUNTER_FIELDS)
_ADD_COUNTERS = ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTER_FIELDS)
UPSERT_ROW = (
    f"INSERT INTO usage_daily (day, tenant_id, key_id, model, {_COUNTERS}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' * len(COUNTER_FIELDS))}) "
    f"ON CONFLICT (day, tenant_id, key_id, model) DO UPDATE SET {_ADD_COUNTERS}"
)
_RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
INSERT_RECORD = (
    f"INSERT INTO usage_records ({_RECORD_COLUMNS}, day) "
    f"VALUES ({', '.join('?' * (len(RECORD_FIELDS) + 1))}) ON CONFLICT (record_id) DO NOTHING"
)


@guarded
class SqliteUsageBackend:
    def __init__(
        self, path: Path | SqliteFile, busy_timeout_s: float = BUSY_TIMEOUT_S, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("usage", budget_s)
        self._file = sqlite_file(path, busy_timeout_s, SCHEMA)
        self._file.add_columns("usage_records", ADDED_COLUMNS)  # files made before they were

    async def write(self, records: list[UsageRecord]) -> None:
        await asyncio.to_thread(self._write, records)

    def _write(self, records: list[UsageRecord]) -> None:
        with self._file.transaction() as db:
            stored = [
                record
                for record in records
                if db.execute(INSERT_RECORD, (*record.values(), record.day)).rowcount
            ]
            rows = daily_rows(stored)
            db.executemany(UPSERT_ROW, [(*key, *counts.values()) for key, counts in rows.items()])

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
        query = f"SELECT day, tenant_id, key_id, model, {_COUNTERS} FROM usage_daily WHERE {where}"
        rows = self._file.read(query, tuple(value for _, value in given))
        return [(UsageKey(*row[:4]), UsageCounts(*row[4:])) for row in rows]

    async def read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        return await asyncio.to_thread(self._read_records, record_filter)

    def _read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        rows = self._file.read(
            f"SELECT {_RECORD_COLUMNS} FROM usage_records WHERE tenant_id = ? "
            "AND day >= ? AND day <= ?",
            (
                record_filter.tenant_id,
                record_filter.first_day or "",
                record_filter.last_day or "9999-12-31",
            ),
        )
        return [_record(row) for row in rows]

    async def prune_records(self, before_day: str, limit: int) -> int:
        with self._file.transaction() as db:
            return db.execute(
                "DELETE FROM usage_records WHERE rowid IN "
                "(SELECT rowid FROM usage_records WHERE day < ? LIMIT ?)",
                (before_day, limit),
            ).rowcount

    async def ping(self) -> None:
        self._file.read("SELECT 1")

    async def close(self) -> None:
        self._file.close()


_BOOLEAN_FIELDS = {"stream", "estimated", "aborted"}


def _record(row: tuple[Any, ...]) -> UsageRecord:
    """A record read back (SQLite has no booleans: 0 and 1)."""
    values: dict[str, Any] = {
        name: bool(value) if name in _BOOLEAN_FIELDS else value
        for name, value in zip(RECORD_FIELDS, row, strict=True)
    }
    return UsageRecord(**values)
