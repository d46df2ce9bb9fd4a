"""The adapter registry in the gateway's SQLite file, in a table of its own.

Same conventions as the tenancy store (gateway/tenancy/sqlite_store.py): a JSON document per
record, short direct calls instead of a thread hop, a lock around the shared connection, and
write transactions that take the file's lock up front.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from gateway.adapters.models import AdapterRecord, adapter_from_dict, adapter_to_dict
from gateway.sqlite import BUSY_TIMEOUT_S, SqliteFile, sqlite_file
from gateway.store_health import StoreHealth, guarded
from gateway.tenancy.store import Conflict, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS lora_adapters (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) WITHOUT ROWID;
"""


@guarded
class SqliteAdapterRegistry:
    def __init__(
        self, path: Path | SqliteFile, busy_timeout_s: float = BUSY_TIMEOUT_S, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("adapters", budget_s)
        self._file = sqlite_file(path, busy_timeout_s, SCHEMA)

    def _write(self, sql: str, parameters: tuple[str, ...]) -> int:
        """One statement in its own write transaction; returns the rows it changed."""
        with self._file.transaction() as db:
            return db.execute(sql, parameters).rowcount

    def _read(self, sql: str, parameters: tuple[str, ...] = ()) -> list[AdapterRecord]:
        rows = self._file.read(sql, parameters)
        return [adapter_from_dict(orjson.loads(doc)) for (doc,) in rows]

    async def create(self, record: AdapterRecord) -> None:
        try:
            self._write(
                "INSERT INTO lora_adapters (name, doc) VALUES (?, ?)", (record.name, _dump(record))
            )
        except sqlite3.IntegrityError as error:
            raise Conflict(f"an adapter named {record.name!r} exists") from error

    async def get(self, name: str) -> AdapterRecord | None:
        records = self._read("SELECT doc FROM lora_adapters WHERE name = ?", (name,))
        return records[0] if records else None

    async def list(self) -> list[AdapterRecord]:
        return self._read("SELECT doc FROM lora_adapters ORDER BY name")

    async def update(self, record: AdapterRecord) -> None:
        sql = "UPDATE lora_adapters SET doc = ? WHERE name = ?"
        if not self._write(sql, (_dump(record), record.name)):
            raise NotFound(f"no adapter {record.name!r}")

    async def delete(self, name: str) -> None:
        if not self._write("DELETE FROM lora_adapters WHERE name = ?", (name,)):
            raise NotFound(f"no adapter {name!r}")

    async def ping(self) -> None:
        self._file.read("SELECT 1")

    async def close(self) -> None:
        self._file.close()


def _dump(record: AdapterRecord) -> str:
    return orjson.dumps(adapter_to_dict(record)).decode()
