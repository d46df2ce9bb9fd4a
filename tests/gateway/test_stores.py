"""The settings choose every store in one place: Postgres with its URL (Redis then only for the
limiter), else Redis with a URL (one server, Sentinel or Cluster, as the URL says), else the
SQLite file."""

from __future__ import annotations

import uuid
from pathlib import Path

from gateway.adapters.postgres_registry import PostgresAdapterRegistry
from gateway.adapters.redis_registry import RedisAdapterRegistry
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.responses.postgres_store import PostgresResponseStore
from gateway.responses.redis_store import RedisResponseStore
from gateway.responses.sqlite_store import SqliteResponseStore
from gateway.safety.policy import PolicySpec
from gateway.safety.policy_store import PostgresPolicyStore, RedisPolicyStore, SqlitePolicyStore
from gateway.settings import StoreSettings
from gateway.stores import Stores, open_stores
from gateway.tenancy.postgres_store import PostgresStore
from gateway.tenancy.redis_store import RedisStore
from gateway.tenancy.sqlite_store import SqliteStore
from gateway.usage.postgres_backend import PostgresUsageBackend
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.redis import delete_prefixed_keys


async def tenants_and_a_policy_round_trip(stores: Stores) -> None:
    """No tenants yet, and a safety policy stored, read and deleted (the policies' contract
    suite is tests/gateway/safety/test_engine.py)."""
    assert await stores.keys.list_tenants() == []
    policy = PolicySpec.model_validate({"rules": [{"name": "cards", "detector": "payment_card"}]})
    assert (await stores.safety_policies.put("cards", policy))[1] is True
    assert [stored.spec for stored in await stores.safety_policies.load_all()] == [policy]
    assert await stores.safety_policies.delete("cards") is True


async def test_without_a_url_every_store_is_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "gateway.db"
    stores = open_stores(StoreSettings(sqlite_path=path, call_budget_s=0.7))
    kinds = [type(store) for store in stores.all()]
    assert kinds == [
        SqliteStore,
        SqliteAdapterRegistry,
        SqlitePolicyStore,
        SqliteUsageBackend,
        SqliteResponseStore,
    ]
    assert path.exists()
    for store in stores.all():
        assert store.health.budget_s == 0.7
        await store.ping()
        await store.close()


async def test_with_a_url_every_store_is_redis(redis_topology_url: str, tmp_path: Path) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    settings = StoreSettings(
        redis_url=redis_topology_url, redis_prefix=prefix, sqlite_path=tmp_path / "x"
    )
    stores = open_stores(settings)
    kinds = [type(store) for store in stores.all()]
    assert kinds == [
        RedisStore,
        RedisAdapterRegistry,
        RedisPolicyStore,
        RedisUsageBackend,
        RedisResponseStore,
    ]
    await tenants_and_a_policy_round_trip(stores)
    for store in stores.all():
        await store.ping()
        await store.close()
    await delete_prefixed_keys(redis_topology_url, prefix)


async def test_with_a_postgres_url_every_durable_store_is_postgres(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Postgres takes every durable store even beside a Redis URL (which the limiter keeps)."""
    path = tmp_path / "gateway.db"
    settings = StoreSettings(
        postgres_url=postgres_url, redis_url=redis_url, sqlite_path=path, call_budget_s=0.7
    )
    stores = open_stores(settings)
    kinds = [type(store) for store in stores.all()]
    assert kinds == [
        PostgresStore,
        PostgresAdapterRegistry,
        PostgresPolicyStore,
        PostgresUsageBackend,
        PostgresResponseStore,
    ]
    await tenants_and_a_policy_round_trip(stores)
    for store in stores.all():
        assert store.health.budget_s == 0.7
        await store.ping()
        await store.close()
    assert not path.exists()
