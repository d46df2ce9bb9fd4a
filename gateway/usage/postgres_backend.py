"""The ledger in the gateway's Postgres database, beside the key store, in tables of its own.

`usage_records` holds one row per request, keyed by its record id; `usage_daily` the counts per
(day, tenant, key, model) (gateway/postgres/migrations). A write is one transaction of two
statements, each taking the whole batch as arrays (unnest), so a thousand records cost two
round trips: the records are inserted unless their id is there already (ON CONFLICT DO
NOTHING ... RETURNING the ids inserted), and only those are added to their daily rows. A record
written twice (a retried flush whose answer was lost, a replayed log) therefore counts once,
and a transaction that fails leaves nothing of the batch behind.

Daily rows are upserted in key order, so two instances adding to the same rows lock them in
the same order and do not deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.postgres.database import PostgresDatabase
from gateway.store_health import StoreHealth, guarded
from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.counts import COUNTER_FIELDS, UsageCounts, UsageKey
from gateway.usage.records import RECORD_FIELDS, UsageRecord, daily_rows

# Each record field's column type (a field added to UsageRecord needs a migration and an entry).
_COLUMN_TYPES = {
    "record_id": "text",
    "request_id": "text",
    "time": "float8",
    "tenant_id": "text",
    "key_id": "text",
    "endpoint": "text",
    "model": "text",
    "upstream_model": "text",
    "replica": "text",
    "stream": "bool",
    "status": "int4",
    "prompt_tokens": "int4",
    "cached_tokens": "int4",
    "completion_tokens": "int4",
    "latency_ms": "float8",
    "ttft_ms": "float8",
    "estimated": "bool",
    "aborted": "bool",
    "base_model": "text",
    "adapter": "text",
    "finish_reason": "text",
    "safety_action": "text",
}
_RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
_RECORD_ARRAYS = ", ".join(f"%s::{_COLUMN_TYPES[name]}[]" for name in RECORD_FIELDS)
INSERT_RECORDS = (
    f"INSERT INTO usage_records ({_RECORD_COLUMNS}, day) "
    f"SELECT * FROM unnest({_RECORD_ARRAYS}, %s::date[]) "
    "ON CONFLICT (record_id) DO NOTHING RETURNING record_id"
)
_COUNTERS = ", ".join(COUNTER_FIELDS)
_ADD_COUNTERS = ", ".join(
    f"{name} = usage_daily.{name} + excluded.{name}" for name in COUNTER_FIELDS
)
UPSERT_ROWS = (
    f"INSERT INTO usage_daily (day, tenant_id, key_id, model, {_COUNTERS}) "
    "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::text[], "
    f"{', '.join(['%s::int8[]'] * len(COUNTER_FIELDS))}) "
    f"ON CONFLICT (day, tenant_id, key_id, model) DO UPDATE SET {_ADD_COUNTERS}"
)


@guarded
class PostgresUsageBackend:
    def __init__(self, database: PostgresDatabase, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("usage", budget_s)
        self._db = database.used()

    async def write(self, records: list[UsageRecord]) -> None:
        batch: dict[str, UsageRecord] = {}
        for record in records:  # a record twice in one batch: the first one, as a store would
            batch.setdefault(record.record_id, record)
        if not batch:
            return
        columns = _columns(record.values() for record in batch.values())
        days = [record.day for record in batch.values()]
        async with self._db.connection() as conn, conn.transaction():
            inserted = await (await conn.execute(INSERT_RECORDS, (*columns, days))).fetchall()
            rows = sorted(daily_rows(batch[record_id] for (record_id,) in inserted).items())
            if rows:
                keys = _columns(key for key, _ in rows)
                sums = _columns(counts.values() for _, counts in rows)
                await conn.execute(UPSERT_ROWS, (*keys, *sums))

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        conditions = [
            ("tenant_id = %s", usage_filter.tenant_id),
            ("key_id = %s", usage_filter.key_id),
            ("model = %s", usage_filter.model),
            ("day >= %s::date", usage_filter.first_day),
            ("day <= %s::date", usage_filter.last_day),
        ]
        rows = await self._select(
            f"SELECT day, tenant_id, key_id, model, {_COUNTERS} FROM usage_daily", conditions
        )
        return [(UsageKey(row[0].isoformat(), *row[1:4]), UsageCounts(*row[4:])) for row in rows]

    async def read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        conditions = [
            ("tenant_id = %s", record_filter.tenant_id),
            ("day >= %s::date", record_filter.first_day),
            ("day <= %s::date", record_filter.last_day),
        ]
        rows = await self._select(f"SELECT {_RECORD_COLUMNS} FROM usage_records", conditions)
        return [UsageRecord(*row) for row in rows]

    async def _select(
        self, query: str, conditions: list[tuple[str, str | None]]
    ) -> list[tuple[Any, ...]]:
        """`query` with the conditions whose value is given, ANDed."""
        given = [(condition, value) for condition, value in conditions if value is not None]
        where = " AND ".join(condition for condition, _ in given) or "true"
        return await self._db.read(f"{query} WHERE {where}", [value for _, value in given])

    async def prune_records(self, before_day: str, limit: int) -> int:
        return await self._db.write(
            "DELETE FROM usage_records WHERE record_id IN "
            "(SELECT record_id FROM usage_records WHERE day < %s::date LIMIT %s)",
            (before_day, limit),
        )

    async def ping(self) -> None:
        await self._db.read("SELECT 1")

    async def close(self) -> None:
        await self._db.close()


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows of equal length as one list per column: the arrays that unnest takes."""
    return [list(column) for column in zip(*rows, strict=True)]
