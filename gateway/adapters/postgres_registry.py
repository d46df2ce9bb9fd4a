"""The adapter registry in the gateway's Postgres database, a table of its own
(`lora_adapters`, gateway/postgres/migrations): a jsonb document per name.

Same conventions as the tenancy store (gateway/tenancy/postgres_store.py): the shared pool,
one statement per call, the primary key making a create of a taken name a Conflict.
"""

from __future__ import annotations

import orjson
import psycopg
from psycopg.types.json import Jsonb

from gateway.adapters.models import AdapterRecord, adapter_from_dict, adapter_to_dict
from gateway.postgres.database import PostgresDatabase
from gateway.store_health import StoreHealth, guarded
from gateway.tenancy.store import Conflict, NotFound


@guarded
class PostgresAdapterRegistry:
    def __init__(self, database: PostgresDatabase, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("adapters", budget_s)
        self._db = database.used()

    async def _read(self, query: str, parameters: tuple[str, ...] = ()) -> list[AdapterRecord]:
        return [adapter_from_dict(doc) for (doc,) in await self._db.read(query, parameters)]

    async def create(self, record: AdapterRecord) -> None:
        try:
            await self._db.write(
                "INSERT INTO lora_adapters (name, doc) VALUES (%s, %s)",
                (record.name, _document(record)),
            )
        except psycopg.errors.UniqueViolation as error:
            raise Conflict(f"an adapter named {record.name!r} exists") from error

    async def get(self, name: str) -> AdapterRecord | None:
        records = await self._read("SELECT doc FROM lora_adapters WHERE name = %s", (name,))
        return records[0] if records else None

    async def list(self) -> list[AdapterRecord]:
        return await self._read("SELECT doc FROM lora_adapters ORDER BY name")

    async def update(self, record: AdapterRecord) -> None:
        query = "UPDATE lora_adapters SET doc = %s WHERE name = %s"
        if not await self._db.write(query, (_document(record), record.name)):
            raise NotFound(f"no adapter {record.name!r}")

    async def delete(self, name: str) -> None:
        if not await self._db.write("DELETE FROM lora_adapters WHERE name = %s", (name,)):
            raise NotFound(f"no adapter {name!r}")

    async def ping(self) -> None:
        await self._db.read("SELECT 1")

    async def close(self) -> None:
        await self._db.close()


def _document(record: AdapterRecord) -> Jsonb:
    return Jsonb(adapter_to_dict(record), dumps=orjson.dumps)
