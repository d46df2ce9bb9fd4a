"""The store on Postgres: tenants, keys and the audit log in tables (gateway/postgres/
migrations/0001_initial.sql), for several gateway instances and for operators' own queries.

Records are jsonb documents of the `models` dataclasses in a `doc` column, beside the columns
that need an index or a constraint, as in the SQLite file: tenant name (UNIQUE), key hashes (a
table keyed by hash), created_at and the audit fields. A key's `last_used_at` is a column of its
own, authoritative over the document's copy, and only moves forward (GREATEST ignores NULL), so
`touch_keys` updates it without rewriting documents and a late batch cannot undo a newer time.
Every write that checks before it changes is one transaction; the constraints make a check
and its change atomic between instances (two creates of one name: one UniqueViolation).

Invalidation across instances: LISTEN/NOTIFY on the channel `INVALIDATION_CHANNEL` of the
database. The listener holds a connection of its own (not the pool's), PINGs it while idle so
that a dead peer is noticed, and after every reconnection calls the handler once, since a
notification sent while it was away is not queued for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from gateway.postgres.database import Connection, PostgresDatabase, connect_options
from gateway.store_health import StoreHealth, guarded
from gateway.tenancy.models import (
    ApiKey,
    AuditEntry,
    Tenant,
    audit_from_dict,
    key_from_dict,
    tenant_from_dict,
    to_dict,
)
from gateway.tenancy.store import Conflict, InvalidationHandler, NotFound, audit_where, notify

logger = logging.getLogger(__name__)

INVALIDATION_CHANNEL = "vllm_gateway_invalidate"
LISTENER_NAME = "vllm-gateway invalidation listener"
# How long a listener waits for Postgres to come back before connecting again.
RECONNECT_DELAY_S = 0.5
# A listening connection is silent while nobody notifies; query it this often when idle, so a
# dead peer (no TCP reset) is noticed.
LISTENER_PING_INTERVAL_S = 5.0

ADVANCE_LAST_USED = "last_used_at = GREATEST(api_keys.last_used_at, %(at)s::float8)"


@guarded
class PostgresStore:
    """The `Store` in a Postgres database, shared by every instance."""

    def __init__(self, database: PostgresDatabase, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("keys", budget_s)
        self._db = database.used()

    @property
    def url(self) -> str:
        return self._db.url

    async def start(self) -> None:
        """Refuse to start on a database behind this gateway's migrations."""
        await self._db.start()

    async def create_tenant(self, tenant: Tenant) -> None:
        try:
            await self._db.write(
                "INSERT INTO tenants (id, name, created_at, doc) VALUES (%s, %s, %s, %s)",
                (tenant.id, tenant.name, tenant.created_at, _document(tenant)),
            )
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(f"a tenant with id {tenant.id!r} or this name exists") from error

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = await self._db.read("SELECT doc FROM tenants WHERE id = %s", (tenant_id,))
        return tenant_from_dict(rows[0][0]) if rows else None

    async def list_tenants(self, offset: int = 0, limit: int | None = None) -> list[Tenant]:
        rows = await self._db.read(
            "SELECT doc FROM tenants ORDER BY created_at, id LIMIT %s OFFSET %s",
            (limit, offset),  # LIMIT NULL: no limit
        )
        return [tenant_from_dict(doc) for (doc,) in rows]

    async def update_tenant(self, tenant: Tenant) -> None:
        try:
            updated = await self._db.write(
                "UPDATE tenants SET name = %s, created_at = %s, doc = %s WHERE id = %s",
                (tenant.name, tenant.created_at, _document(tenant), tenant.id),
            )
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(f"another tenant is named {tenant.name!r}") from error
        if not updated:
            raise NotFound(f"no tenant {tenant.id!r}")

    async def delete_tenant(self, tenant_id: str) -> None:
        async with self._db.connection() as conn, conn.transaction():
            deleted = await conn.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,))
            if not deleted.rowcount:
                raise NotFound(f"no tenant {tenant_id!r}")
            await conn.execute(
                "UPDATE api_keys SET doc = jsonb_set(doc, '{revoked_at}', to_jsonb(%s::float8)) "
                "WHERE tenant_id = %s AND doc->>'revoked_at' IS NULL",
                (time.time(), tenant_id),
            )

    async def create_key(self, key: ApiKey) -> None:
        try:
            async with self._db.connection() as conn, conn.transaction():
                # FOR KEY SHARE: a delete of the tenant waits until this key is in
                tenant = await conn.execute(
                    "SELECT 1 FROM tenants WHERE id = %s FOR KEY SHARE", (key.tenant_id,)
                )
                if await tenant.fetchone() is None:
                    raise NotFound(f"no tenant {key.tenant_id!r}")
                await conn.execute(
                    "INSERT INTO api_keys (id, tenant_id, created_at, last_used_at, doc) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (key.id, key.tenant_id, key.created_at, key.last_used_at, _document(key)),
                )
                await _index_hashes(conn, key)
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(f"a key with id {key.id!r} or this secret exists") from error

    async def get_key(self, key_id: str) -> ApiKey | None:
        query = "SELECT doc, last_used_at FROM api_keys WHERE id = %s"
        rows = await self._db.read(query, (key_id,))
        return _load_key(*rows[0]) if rows else None

    async def find_key_by_hash(self, secret_hash: str) -> ApiKey | None:
        rows = await self._db.read(
            "SELECT k.doc, k.last_used_at FROM key_hashes AS h "
            "JOIN api_keys AS k ON k.id = h.key_id WHERE h.hash = %s",
            (secret_hash,),
        )
        return _load_key(*rows[0]) if rows else None

    async def list_keys(
        self, tenant_id: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[ApiKey]:
        where, values = ("", ()) if tenant_id is None else ("WHERE tenant_id = %s", (tenant_id,))
        rows = await self._db.read(
            f"SELECT doc, last_used_at FROM api_keys {where} "
            "ORDER BY created_at, id LIMIT %s OFFSET %s",
            (*values, limit, offset),
        )
        return [_load_key(doc, last_used_at) for doc, last_used_at in rows]

    async def update_key(self, key: ApiKey) -> None:
        try:
            async with self._db.connection() as conn, conn.transaction():
                updated = await conn.execute(
                    "UPDATE api_keys SET tenant_id = %(tenant_id)s, created_at = %(created_at)s, "
                    f"doc = %(doc)s, {ADVANCE_LAST_USED} WHERE id = %(id)s",
                    {
                        "tenant_id": key.tenant_id,
                        "created_at": key.created_at,
                        "doc": _document(key),
                        "at": key.last_used_at,
                        "id": key.id,
                    },
                )
                if not updated.rowcount:
                    raise NotFound(f"no key {key.id!r}")
                await conn.execute("DELETE FROM key_hashes WHERE key_id = %s", (key.id,))
                await _index_hashes(conn, key)
        except psycopg.errors.UniqueViolation as error:
            raise Conflict("another key has this secret") from error

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if not last_used:
            return
        await self._db.write(
            "UPDATE api_keys SET last_used_at = GREATEST(api_keys.last_used_at, used.at) "
            "FROM unnest(%s::text[], %s::float8[]) AS used (id, at) "
            "WHERE api_keys.id = used.id",
            (list(last_used), list(last_used.values())),
        )

    async def append_audit(self, entry: AuditEntry) -> None:
        try:
            await self._db.write(
                "INSERT INTO audit (id, at, target_id, action, doc) VALUES (%s, %s, %s, %s, %s)",
                (entry.id, entry.at, entry.target_id, entry.action, _document(entry)),
            )
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(f"audit entry {entry.id!r} exists") from error

    async def list_audit(
        self,
        target_id: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        where, values = audit_where(target_id, action, since, "%s")
        rows = await self._db.read(
            f"SELECT doc FROM audit {where} ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",
            (*values, limit, offset),
        )
        return [audit_from_dict(doc) for (doc,) in rows]

    async def publish_invalidation(self) -> None:
        await self._db.read("SELECT pg_notify(%s, '')", (INVALIDATION_CHANNEL,))

    async def listen_invalidations(self, handler: InvalidationHandler) -> None:
        """Call `handler` per notification, and once after every reconnection."""
        listened_before = False
        failing = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._db.url, **connect_options(LISTENER_NAME)
                ) as conn:
                    await conn.execute(f"LISTEN {INVALIDATION_CHANNEL}")
                    failing = False
                    if listened_before:
                        await notify(handler)
                    listened_before = True
                    await _relay_notifications(conn, handler)
            except (psycopg.OperationalError, OSError) as error:
                if not failing:
                    logger.warning("invalidation channel lost, listening again: %s", error)
                failing = True
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def ping(self) -> None:
        await self._db.read("SELECT 1")

    async def close(self) -> None:
        await self._db.close()


async def _relay_notifications(conn: Connection, handler: InvalidationHandler) -> None:
    """Call `handler` per notification; raise OperationalError when the connection is lost
    (the idle query fails, or does not answer within an interval)."""
    while True:
        async for _ in conn.notifies(timeout=LISTENER_PING_INTERVAL_S):
            await notify(handler)
        try:
            async with asyncio.timeout(LISTENER_PING_INTERVAL_S):
                await conn.execute("SELECT 1")
        except TimeoutError as error:
            raise psycopg.OperationalError("the invalidation channel did not answer") from error


def _document(record: Tenant | ApiKey | AuditEntry) -> Jsonb:
    return Jsonb(to_dict(record), dumps=orjson.dumps)


async def _index_hashes(conn: Connection, key: ApiKey) -> None:
    await conn.execute(
        "INSERT INTO key_hashes (hash, key_id) SELECT unnest(%s::text[]), %s",
        (key.secret_hashes(), key.id),
    )


def _load_key(document: dict[str, Any], last_used_at: float | None) -> ApiKey:
    key = key_from_dict(document)
    key.last_used_at = last_used_at
    return key
