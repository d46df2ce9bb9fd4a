"""The embedded store, used when no Redis is configured: one SQLite file in WAL mode.

Records are JSON documents in a `doc` column, beside the columns that need an index or a
constraint: tenant name (UNIQUE), key hashes (a table keyed by hash), created_at and the audit
fields. A key's `last_used_at` is a column of its own, authoritative over the document's copy,
so `touch_keys` updates it without rewriting documents.

The async methods call sqlite3 directly instead of hopping to a thread: every query is a short
indexed read or a small write on a local file, cheaper than the hop itself. The one way to wait
longer is a write meeting another process's write lock (bounded by `busy_timeout_s`); writes
are admin changes and the batched `touch_keys`, never the request path. In WAL mode readers
never wait for a writer, so several uvicorn workers can share the file. The connection may be
used from other threads (`check_same_thread=False`), so a lock serialises its use.

Invalidation across processes: `publish_invalidation` increments a generation counter in the
file, and `listen_invalidations` polls `PRAGMA data_version`, which changes when another
connection commits, and reads the counter only then. Only a publication invalidates: the
frequent `touch_keys` commits of other workers do not flush every cache.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson

from gateway.sqlite import BUSY_TIMEOUT_S, SqliteFile, sqlite_file
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

POLL_INTERVAL_S = 0.25

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tenants_by_creation ON tenants (created_at, id);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_creation ON api_keys (created_at, id);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id, created_at, id);
CREATE TABLE IF NOT EXISTS key_hashes (
    hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS key_hashes_by_key ON key_hashes (key_id);
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    target_id TEXT NOT NULL,
    action TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target_id, at, id);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, at, id);
CREATE TABLE IF NOT EXISTS invalidation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO invalidation VALUES (1, 0);
COMMIT;
"""

# last_used_at only moves forward, so a late batch from one worker cannot undo a newer time
# recorded by another; a NULL :at leaves it as it is.
ADVANCE_LAST_USED = (
    "last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < :at "
    "THEN :at ELSE last_used_at END"
)


@guarded
class SqliteStore:
    """The `Store` in one SQLite file, shared by the workers of one host."""

    def __init__(
        self, path: Path | SqliteFile, busy_timeout_s: float = BUSY_TIMEOUT_S, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("keys", budget_s)
        self._local_handlers: list[InvalidationHandler] = []
        self._file = sqlite_file(path, busy_timeout_s, SCHEMA)

    @property
    def path(self) -> Path:
        return self._file.path

    async def create_tenant(self, tenant: Tenant) -> None:
        try:
            with self._file.transaction() as db:
                db.execute(
                    "INSERT INTO tenants (id, name, created_at, doc) VALUES (?, ?, ?, ?)",
                    (tenant.id, tenant.name, tenant.created_at, _dump(tenant)),
                )
        except sqlite3.IntegrityError as error:
            raise Conflict(f"a tenant with id {tenant.id!r} or this name exists") from error

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = self._file.read("SELECT doc FROM tenants WHERE id = ?", (tenant_id,))
        return tenant_from_dict(orjson.loads(rows[0][0])) if rows else None

    async def list_tenants(self, offset: int = 0, limit: int | None = None) -> list[Tenant]:
        rows = self._file.read(
            "SELECT doc FROM tenants ORDER BY created_at, id LIMIT ? OFFSET ?",
            (-1 if limit is None else limit, offset),  # a negative LIMIT: no limit
        )
        return [tenant_from_dict(orjson.loads(doc)) for (doc,) in rows]

    async def update_tenant(self, tenant: Tenant) -> None:
        try:
            with self._file.transaction() as db:
                updated = db.execute(
                    "UPDATE tenants SET name = ?, created_at = ?, doc = ? WHERE id = ?",
                    (tenant.name, tenant.created_at, _dump(tenant), tenant.id),
                ).rowcount
        except sqlite3.IntegrityError as error:
            raise Conflict(f"another tenant is named {tenant.name!r}") from error
        if not updated:
            raise NotFound(f"no tenant {tenant.id!r}")

    async def delete_tenant(self, tenant_id: str) -> None:
        revoked_at = time.time()
        with self._file.transaction() as db:
            if not db.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,)).rowcount:
                raise NotFound(f"no tenant {tenant_id!r}")
            keys = db.execute("SELECT id, doc FROM api_keys WHERE tenant_id = ?", (tenant_id,))
            for key_id, doc in keys.fetchall():
                key = orjson.loads(doc)
                if key["revoked_at"] is None:
                    key["revoked_at"] = revoked_at
                    db.execute(
                        "UPDATE api_keys SET doc = ? WHERE id = ?",
                        (orjson.dumps(key).decode(), key_id),
                    )

    async def create_key(self, key: ApiKey) -> None:
        try:
            with self._file.transaction() as db:
                tenant = db.execute("SELECT 1 FROM tenants WHERE id = ?", (key.tenant_id,))
                if tenant.fetchone() is None:
                    raise NotFound(f"no tenant {key.tenant_id!r}")
                db.execute(
                    "INSERT INTO api_keys (id, tenant_id, created_at, last_used_at, doc) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key.id, key.tenant_id, key.created_at, key.last_used_at, _dump(key)),
                )
                _index_hashes(db, key)
        except sqlite3.IntegrityError as error:
            raise Conflict(f"a key with id {key.id!r} or this secret exists") from error

    async def get_key(self, key_id: str) -> ApiKey | None:
        rows = self._file.read("SELECT doc, last_used_at FROM api_keys WHERE id = ?", (key_id,))
        return _load_key(*rows[0]) if rows else None

    async def find_key_by_hash(self, secret_hash: str) -> ApiKey | None:
        rows = self._file.read(
            "SELECT k.doc, k.last_used_at FROM key_hashes AS h "
            "JOIN api_keys AS k ON k.id = h.key_id WHERE h.hash = ?",
            (secret_hash,),
        )
        return _load_key(*rows[0]) if rows else None

    async def list_keys(
        self, tenant_id: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[ApiKey]:
        where, values = ("", ()) if tenant_id is None else ("WHERE tenant_id = ?", (tenant_id,))
        rows = self._file.read(
            f"SELECT doc, last_used_at FROM api_keys {where} "
            "ORDER BY created_at, id LIMIT ? OFFSET ?",
            (*values, limit, offset),
        )
        return [_load_key(doc, last_used_at) for doc, last_used_at in rows]

    async def update_key(self, key: ApiKey) -> None:
        try:
            with self._file.transaction() as db:
                updated = db.execute(
                    "UPDATE api_keys SET tenant_id = :tenant_id, created_at = :created_at, "
                    f"doc = :doc, {ADVANCE_LAST_USED} WHERE id = :id",
                    {
                        "tenant_id": key.tenant_id,
                        "created_at": key.created_at,
                        "doc": _dump(key),
                        "at": key.last_used_at,
                        "id": key.id,
                    },
                ).rowcount
                if not updated:
                    raise NotFound(f"no key {key.id!r}")
                db.execute("DELETE FROM key_hashes WHERE key_id = ?", (key.id,))
                _index_hashes(db, key)
        except sqlite3.IntegrityError as error:
            raise Conflict("another key has this secret") from error

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        with self._file.transaction() as db:
            db.executemany(
                f"UPDATE api_keys SET {ADVANCE_LAST_USED} WHERE id = :id",
                [{"id": key_id, "at": at} for key_id, at in last_used.items()],
            )

    async def append_audit(self, entry: AuditEntry) -> None:
        try:
            with self._file.transaction() as db:
                db.execute(
                    "INSERT INTO audit (id, at, target_id, action, doc) VALUES (?, ?, ?, ?, ?)",
                    (entry.id, entry.at, entry.target_id, entry.action, _dump(entry)),
                )
        except sqlite3.IntegrityError as error:
            raise Conflict(f"audit entry {entry.id!r} exists") from error

    async def list_audit(
        self,
        target_id: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        where, values = audit_where(target_id, action, since, "?")
        rows = self._file.read(
            f"SELECT doc FROM audit {where} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?",
            (*values, limit, offset),
        )
        return [audit_from_dict(orjson.loads(doc)) for (doc,) in rows]

    async def publish_invalidation(self) -> None:
        with self._file.transaction() as db:
            db.execute("UPDATE invalidation SET generation = generation + 1")
        for handler in list(self._local_handlers):
            await notify(handler)

    async def listen_invalidations(self, handler: InvalidationHandler) -> None:
        """Call `handler` on this process's publications at once, on others' within a poll."""
        self._local_handlers.append(handler)
        try:
            version, generation = self._data_version(), self._generation()
            while True:
                await asyncio.sleep(POLL_INTERVAL_S)
                current_version = self._data_version()
                if current_version == version:
                    continue
                version = current_version
                current_generation = self._generation()
                if current_generation != generation:
                    generation = current_generation
                    await notify(handler)
        finally:
            self._local_handlers.remove(handler)

    def _data_version(self) -> int:
        version: int = self._file.read("PRAGMA data_version")[0][0]
        return version

    def _generation(self) -> int:
        generation: int = self._file.read("SELECT generation FROM invalidation")[0][0]
        return generation

    async def ping(self) -> None:
        self._file.read("SELECT 1")

    async def close(self) -> None:
        self._file.close()


def _dump(record: Tenant | ApiKey | AuditEntry) -> str:
    return orjson.dumps(to_dict(record)).decode()


def _index_hashes(db: sqlite3.Connection, key: ApiKey) -> None:
    db.executemany(
        "INSERT INTO key_hashes (hash, key_id) VALUES (?, ?)",
        [(secret_hash, key.id) for secret_hash in key.secret_hashes()],
    )


def _load_key(doc: str, last_used_at: float | None) -> ApiKey:
    key = key_from_dict(orjson.loads(doc))
    key.last_used_at = last_used_at
    return key
