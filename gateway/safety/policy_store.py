"""Stored safety policies, beside the tenancy records: a Redis hash, a SQLite or Postgres table.

They live in the same backend as the tenants (Postgres or Redis when the gateway shares state,
else the embedded SQLite file), so every instance sees the same policies; a change is announced
on the tenancy store's invalidation channel and each instance reloads them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import orjson
from pydantic import ValidationError

from gateway.postgres.database import PostgresDatabase
from gateway.redis_client import redis_client
from gateway.safety.policy import PolicySpec
from gateway.sqlite import BUSY_TIMEOUT_S, SqliteFile, sqlite_file
from gateway.store_health import StoreHealth, guarded

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    name: str
    spec: PolicySpec
    updated_at: float

    def document(self) -> bytes:
        return orjson.dumps(
            {"spec": self.spec.model_dump(mode="json"), "updated_at": self.updated_at}
        )

    @classmethod
    def from_document(cls, name: str, document: bytes | str) -> StoredPolicy:
        data = orjson.loads(document)
        return cls(name, PolicySpec.model_validate(data["spec"]), data["updated_at"])


class PolicyStore(Protocol):
    health: StoreHealth

    async def load_all(self) -> list[StoredPolicy]:
        """Sorted by name."""

    async def get(self, name: str) -> StoredPolicy | None: ...

    async def put(self, name: str, spec: PolicySpec) -> tuple[StoredPolicy, bool]:
        """Create or replace; True when it was created."""

    async def delete(self, name: str) -> bool:
        """False when there was no such policy."""

    async def ping(self) -> None:
        """One cheap round trip: whether the store answers (readiness probes)."""

    async def close(self) -> None: ...


def _valid_policies(documents: Iterable[tuple[str, bytes | str]]) -> list[StoredPolicy]:
    """The stored policies that still validate. One stored under older rules (a regex RE2
    cannot run) is skipped with a warning instead of keeping every policy from reloading;
    keys under it then fail closed until an operator saves it again."""
    policies = []
    for name, document in documents:
        try:
            policies.append(StoredPolicy.from_document(name, document))
        except ValidationError as error:
            logger.warning("stored safety policy %r is invalid, skipped: %s", name, error)
    return policies


SCHEMA = """
CREATE TABLE IF NOT EXISTS safety_policies (
    name TEXT PRIMARY KEY,
    updated_at REAL NOT NULL,
    doc TEXT NOT NULL
)
"""


@guarded
class SqlitePolicyStore:
    """A table in the gateway's SQLite file; admin writes only, so calls stay synchronous."""

    def __init__(
        self, path: Path | SqliteFile, busy_timeout_s: float = BUSY_TIMEOUT_S, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("safety_policies", budget_s)
        self._file = sqlite_file(path, busy_timeout_s, SCHEMA)

    async def load_all(self) -> list[StoredPolicy]:
        rows = self._file.read("SELECT name, doc FROM safety_policies ORDER BY name")
        return _valid_policies(rows)

    async def get(self, name: str) -> StoredPolicy | None:
        rows = self._file.read("SELECT doc FROM safety_policies WHERE name = ?", (name,))
        return StoredPolicy.from_document(name, rows[0][0]) if rows else None

    async def put(self, name: str, spec: PolicySpec) -> tuple[StoredPolicy, bool]:
        policy = StoredPolicy(name, spec, time.time())
        with self._file.transaction() as db:
            existed = db.execute("SELECT 1 FROM safety_policies WHERE name = ?", (name,)).fetchall()
            db.execute(
                "INSERT OR REPLACE INTO safety_policies (name, updated_at, doc) VALUES (?, ?, ?)",
                (name, policy.updated_at, policy.document().decode()),
            )
        return policy, not existed

    async def delete(self, name: str) -> bool:
        with self._file.transaction() as db:
            return db.execute("DELETE FROM safety_policies WHERE name = ?", (name,)).rowcount > 0

    async def ping(self) -> None:
        self._file.read("SELECT 1")

    async def close(self) -> None:
        self._file.close()


@guarded
class RedisPolicyStore:
    """One hash, ``{prefix}safety-policies``: policy name -> JSON document. One key, so it
    works alike on one server, under Sentinel and on a Cluster."""

    def __init__(
        self, url: str, prefix: str, timeout_s: float = 0.5, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("safety_policies", budget_s)
        self._redis = redis_client(url, timeout_s)
        self._key = f"{prefix}safety-policies"

    async def load_all(self) -> list[StoredPolicy]:
        # The client decodes nothing (redis-py types its replies `bytes | str`).
        documents = cast(dict[bytes, bytes], await self._redis.hgetall(self._key))
        return _valid_policies(sorted((name.decode(), doc) for name, doc in documents.items()))

    async def get(self, name: str) -> StoredPolicy | None:
        document = await self._redis.hget(self._key, name)
        return StoredPolicy.from_document(name, document) if document is not None else None

    async def put(self, name: str, spec: PolicySpec) -> tuple[StoredPolicy, bool]:
        policy = StoredPolicy(name, spec, time.time())
        added = await self._redis.hset(self._key, name, policy.document())
        return policy, added == 1

    async def delete(self, name: str) -> bool:
        return await self._redis.hdel(self._key, name) == 1

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


@guarded
class PostgresPolicyStore:
    """The `safety_policies` table of the gateway's Postgres database (gateway/postgres/
    migrations): name, time and the jsonb document."""

    def __init__(self, database: PostgresDatabase, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("safety_policies", budget_s)
        self._db = database.used()

    async def load_all(self) -> list[StoredPolicy]:
        rows = await self._db.read("SELECT name, doc::text FROM safety_policies ORDER BY name")
        return _valid_policies(rows)

    async def get(self, name: str) -> StoredPolicy | None:
        rows = await self._db.read("SELECT doc::text FROM safety_policies WHERE name = %s", (name,))
        return StoredPolicy.from_document(name, rows[0][0]) if rows else None

    async def put(self, name: str, spec: PolicySpec) -> tuple[StoredPolicy, bool]:
        policy = StoredPolicy(name, spec, time.time())
        # xmax is 0 on a row this statement inserted, the updating transaction's id otherwise
        rows = await self._db.read(
            "INSERT INTO safety_policies (name, updated_at, doc) VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at, doc = excluded.doc "
            "RETURNING xmax = 0",
            (name, policy.updated_at, policy.document().decode()),
        )
        return policy, bool(rows[0][0])

    async def delete(self, name: str) -> bool:
        return await self._db.write("DELETE FROM safety_policies WHERE name = %s", (name,)) > 0

    async def ping(self) -> None:
        await self._db.read("SELECT 1")

    async def close(self) -> None:
        await self._db.close()
