"""Where the gateway keeps its durable state, chosen in one place from the settings.

Postgres when `store.postgres_url` is set (one pool shared by the stores:
`gateway.postgres.database`; Redis, when also set, keeps only the limiter's counters), else
Redis when `store.redis_url` is set (shared by every instance; one server, Sentinel or Cluster,
as the URL says: `gateway.redis_client`), else the embedded SQLite file.
Every store gets the same Redis client policy (`gateway.redis_client`) and the same call budget
(`gateway.store_health`). The rate limiter is not among them: it keeps its own pipelined
connection with a far smaller budget (`gateway.limits`).

Synchronous, so the app can build them before an event loop runs: Postgres and Redis connect
on the first call, SQLite only opens its file.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.adapters.postgres_registry import PostgresAdapterRegistry
from gateway.adapters.redis_registry import RedisAdapterRegistry
from gateway.adapters.registry import AdapterRegistry
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.postgres.database import PostgresDatabase
from gateway.responses.postgres_store import PostgresResponseStore
from gateway.responses.redis_store import RedisResponseStore
from gateway.responses.sqlite_store import SqliteResponseStore
from gateway.responses.store import ResponseStore
from gateway.safety.policy_store import (
    PolicyStore,
    PostgresPolicyStore,
    RedisPolicyStore,
    SqlitePolicyStore,
)
from gateway.settings import StoreSettings
from gateway.sqlite import SqliteFile
from gateway.store_health import CheckableStore
from gateway.tenancy.postgres_store import PostgresStore
from gateway.tenancy.redis_store import RedisStore
from gateway.tenancy.sqlite_store import SqliteStore
from gateway.tenancy.store import Store
from gateway.usage.backend import UsageBackend
from gateway.usage.postgres_backend import PostgresUsageBackend
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend


@dataclass(frozen=True, slots=True)
class Stores:
    keys: Store  # tenants, API keys, the audit log, and the invalidation channel
    adapters: AdapterRegistry
    safety_policies: PolicyStore
    usage: UsageBackend
    responses: ResponseStore  # the Responses API's stored responses

    def all(self) -> list[CheckableStore]:
        return [self.keys, self.adapters, self.safety_policies, self.usage, self.responses]


def open_stores(settings: StoreSettings, record_retention_days: int = 35) -> Stores:
    """`record_retention_days`: how long Redis keeps usage records (`usage.*`; the other
    stores prune them: gateway/usage/retention.py)."""
    budget = settings.call_budget_s
    if settings.postgres_url:
        database = PostgresDatabase(settings.postgres_url, budget)  # one pool for the five
        return Stores(
            PostgresStore(database, budget),
            PostgresAdapterRegistry(database, budget),
            PostgresPolicyStore(database, budget),
            PostgresUsageBackend(database, budget),
            PostgresResponseStore(database, budget),
        )
    if settings.redis_url:
        url, prefix, timeout = settings.redis_url, settings.redis_prefix, settings.redis_timeout_s
        return Stores(
            RedisStore(url, prefix, timeout, budget),
            RedisAdapterRegistry(url, prefix, timeout, budget),
            RedisPolicyStore(url, prefix, timeout, budget),
            RedisUsageBackend(url, prefix, timeout, budget, record_retention_days * 86400.0),
            RedisResponseStore(url, prefix, timeout, budget),
        )
    file = SqliteFile(settings.sqlite_path)  # one connection, shared by the embedded stores
    return Stores(
        SqliteStore(file, budget_s=budget),
        SqliteAdapterRegistry(file, budget_s=budget),
        SqlitePolicyStore(file, budget_s=budget),
        SqliteUsageBackend(file, budget_s=budget),
        SqliteResponseStore(file, budget_s=budget),
    )
