"""Stored responses in the gateway's SQLite file: a row per response (its JSON document) and
a row per appended batch of a background response's events.

Expired rows are invisible to reads at once and deleted by `run_background` in small batches,
so that no write transaction holds the file's lock for long.
"""

from __future__ import annotations

import time
from pathlib import Path

from gateway.responses.store import PRUNE_BATCH, RUNNING, StoredResponse, prune_expired
from gateway.sqlite import BUSY_TIMEOUT_S, SqliteFile, sqlite_file
from gateway.store_health import StoreHealth, guarded

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
CREATE TABLE IF NOT EXISTS response_events (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    batch INTEGER NOT NULL,
    events BLOB NOT NULL,
    PRIMARY KEY (tenant_id, id, batch)
) WITHOUT ROWID;
"""
_RUNNING_STATUSES = tuple(sorted(RUNNING))


@guarded
class SqliteResponseStore:
    def __init__(
        self, path: Path | SqliteFile, busy_timeout_s: float = BUSY_TIMEOUT_S, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("responses", budget_s)
        self._file = sqlite_file(path, busy_timeout_s, SCHEMA)

    async def put(self, record: StoredResponse) -> None:
        with self._file.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses (tenant_id, id, status, expires_at, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.tenant_id, record.id, record.status, record.expires_at, record.dump()),
            )

    async def put_if_running(self, record: StoredResponse) -> bool:
        with self._file.transaction() as db:
            changed = db.execute(
                "UPDATE responses SET status = ?, expires_at = ?, doc = ? "
                "WHERE tenant_id = ? AND id = ? AND status IN (?, ?) AND expires_at > ?",
                (
                    record.status,
                    record.expires_at,
                    record.dump(),
                    record.tenant_id,
                    record.id,
                    *_RUNNING_STATUSES,
                    time.time(),
                ),
            ).rowcount
        return changed > 0

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        rows = self._file.read(
            "SELECT doc FROM responses WHERE tenant_id = ? AND id = ? AND expires_at > ?",
            (tenant_id, response_id, time.time()),
        )
        return StoredResponse.load(tenant_id, rows[0][0]) if rows else None

    async def delete(self, tenant_id: str, response_id: str) -> bool:
        with self._file.transaction() as db:
            deleted = db.execute(
                "DELETE FROM responses WHERE tenant_id = ? AND id = ? AND expires_at > ?",
                (tenant_id, response_id, time.time()),
            ).rowcount
            db.execute(
                "DELETE FROM response_events WHERE tenant_id = ? AND id = ?",
                (tenant_id, response_id),
            )
        return deleted > 0

    async def append_events(self, record: StoredResponse, events: bytes) -> None:
        tenant_id, response_id = record.tenant_id, record.id
        with self._file.transaction() as db:
            db.execute(
                "INSERT INTO response_events (tenant_id, id, batch, events) "
                "SELECT ?, ?, COALESCE(MAX(batch), 0) + 1, ? FROM response_events "
                "WHERE tenant_id = ? AND id = ?",
                (tenant_id, response_id, events, tenant_id, response_id),
            )

    async def events(self, tenant_id: str, response_id: str) -> bytes:
        rows = self._file.read(
            "SELECT events FROM response_events WHERE tenant_id = ? AND id = ? ORDER BY batch",
            (tenant_id, response_id),
        )
        return b"".join(bytes(events) for (events,) in rows)

    async def prune(self, now: float) -> int:
        """Delete up to one batch of responses expired by `now` (and their events); how many
        went."""
        with self._file.transaction() as db:
            expired = db.execute(
                "SELECT tenant_id, id FROM responses WHERE expires_at <= ? LIMIT ?",
                (now, PRUNE_BATCH),
            ).fetchall()
            db.executemany("DELETE FROM responses WHERE tenant_id = ? AND id = ?", expired)
            db.executemany("DELETE FROM response_events WHERE tenant_id = ? AND id = ?", expired)
        return len(expired)

    async def run_background(self) -> None:
        await prune_expired(self.prune)

    async def ping(self) -> None:
        self._file.read("SELECT 1")

    async def close(self) -> None:
        self._file.close()
