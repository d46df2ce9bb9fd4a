"""Stored responses in the gateway's Postgres database (`responses` and `response_events`,
gateway/postgres/migrations/0002_responses.sql).

Same conventions as the SQLite store: a document per response, expired rows invisible to reads
at once and deleted by `run_background` in small batches; the conditional write is one UPDATE
that names the statuses it may replace.
"""

from __future__ import annotations

import time

from gateway.postgres.database import PostgresDatabase
from gateway.responses.store import PRUNE_BATCH, RUNNING, StoredResponse, prune_expired
from gateway.store_health import StoreHealth, guarded

_RUNNING_STATUSES = sorted(RUNNING)


@guarded
class PostgresResponseStore:
    def __init__(self, database: PostgresDatabase, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("responses", budget_s)
        self._db = database.used()

    async def put(self, record: StoredResponse) -> None:
        await self._db.write(
            "INSERT INTO responses (tenant_id, id, status, expires_at, doc) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, id) DO UPDATE SET "
            "status = excluded.status, expires_at = excluded.expires_at, doc = excluded.doc",
            (record.tenant_id, record.id, record.status, record.expires_at, record.dump()),
        )

    async def put_if_running(self, record: StoredResponse) -> bool:
        changed = await self._db.write(
            "UPDATE responses SET status = %s, expires_at = %s, doc = %s "
            "WHERE tenant_id = %s AND id = %s AND status = ANY(%s) AND expires_at > %s",
            (
                record.status,
                record.expires_at,
                record.dump(),
                record.tenant_id,
                record.id,
                _RUNNING_STATUSES,
                time.time(),
            ),
        )
        return changed > 0

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        rows = await self._db.read(
            "SELECT doc FROM responses WHERE tenant_id = %s AND id = %s AND expires_at > %s",
            (tenant_id, response_id, time.time()),
        )
        return StoredResponse.load(tenant_id, bytes(rows[0][0])) if rows else None

    async def delete(self, tenant_id: str, response_id: str) -> bool:
        async with self._db.connection() as conn, conn.transaction():
            deleted = await conn.execute(
                "DELETE FROM responses WHERE tenant_id = %s AND id = %s AND expires_at > %s",
                (tenant_id, response_id, time.time()),
            )
            await conn.execute(
                "DELETE FROM response_events WHERE tenant_id = %s AND id = %s",
                (tenant_id, response_id),
            )
        return deleted.rowcount > 0

    async def append_events(self, record: StoredResponse, events: bytes) -> None:
        await self._db.write(
            "INSERT INTO response_events (tenant_id, id, events) VALUES (%s, %s, %s)",
            (record.tenant_id, record.id, events),
        )

    async def events(self, tenant_id: str, response_id: str) -> bytes:
        rows = await self._db.read(
            "SELECT events FROM response_events WHERE tenant_id = %s AND id = %s ORDER BY batch",
            (tenant_id, response_id),
        )
        return b"".join(bytes(events) for (events,) in rows)

    async def prune(self, now: float) -> int:
        """Delete up to one batch of responses expired by `now` (and their events); how many
        went."""
        async with self._db.connection() as conn, conn.transaction():
            expired = await (
                await conn.execute(
                    "DELETE FROM responses WHERE (tenant_id, id) IN (SELECT tenant_id, id FROM "
                    "responses WHERE expires_at <= %s LIMIT %s) RETURNING tenant_id, id",
                    (now, PRUNE_BATCH),
                )
            ).fetchall()
            if expired:
                await conn.execute(
                    "DELETE FROM response_events WHERE (tenant_id, id) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    ([tenant for tenant, _ in expired], [rid for _, rid in expired]),
                )
        return len(expired)

    async def run_background(self) -> None:
        await prune_expired(self.prune)

    async def ping(self) -> None:
        await self._db.read("SELECT 1")

    async def close(self) -> None:
        await self._db.close()
