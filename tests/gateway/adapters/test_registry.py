"""One suite for both registry stores: what holds for SQLite holds for Redis (one server,
Sentinel, Cluster), and a second instance on the same data (another gateway process) sees
every change."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.adapters.models import AdapterRecord
from gateway.adapters.redis_registry import RedisAdapterRegistry
from gateway.adapters.registry import AdapterRegistry
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.settings import StoreSettings
from gateway.stores import open_stores
from gateway.tenancy.store import Conflict, NotFound
from tests.fixtures.redis import delete_prefixed_keys
from tests.fixtures.redis_topologies import TOPOLOGIES, topology_url


@pytest_asyncio.fixture(params=["sqlite", *TOPOLOGIES], loop_scope="function")
async def registries(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[AdapterRegistry, AdapterRegistry]]:
    """Two registries on the same data."""
    if request.param == "sqlite":
        settings = StoreSettings(sqlite_path=tmp_path / "gateway.db")
    else:
        url = topology_url(request, request.param)
        settings = StoreSettings(redis_url=url, redis_prefix=f"test-{uuid.uuid4().hex}:")
    one, other = open_stores(settings).adapters, open_stores(settings).adapters
    expected = SqliteAdapterRegistry if request.param == "sqlite" else RedisAdapterRegistry
    assert isinstance(one, expected)
    yield one, other
    await one.close()
    await other.close()
    if settings.redis_url:
        await delete_prefixed_keys(settings.redis_url, settings.redis_prefix)


def record(name: str, **changes: object) -> AdapterRecord:
    base = AdapterRecord(name, f"/adapters/{name}", "base", "tenant_1", 8, 1.5, 2.5)
    return replace(base, **changes)


async def test_create_get_list_round_trip(
    registries: tuple[AdapterRegistry, AdapterRegistry],
) -> None:
    one, other = registries
    await one.create(record("zeta"))
    await one.create(record("alpha", tenant_id=None, path="org/hub-adapter"))
    assert await other.get("zeta") == record("zeta")
    assert await other.get("missing") is None
    assert [r.name for r in await other.list()] == ["alpha", "zeta"]
    assert (await other.list())[0] == record("alpha", tenant_id=None, path="org/hub-adapter")


async def test_names_are_unique(registries: tuple[AdapterRegistry, AdapterRegistry]) -> None:
    one, other = registries
    await one.create(record("a"))
    with pytest.raises(Conflict):
        await other.create(record("a", path="/elsewhere"))
    assert (await one.get("a")) == record("a")


async def test_update_replaces_and_never_creates(
    registries: tuple[AdapterRegistry, AdapterRegistry],
) -> None:
    one, other = registries
    with pytest.raises(NotFound):
        await one.update(record("a"))
    assert await one.get("a") is None
    await one.create(record("a"))
    await other.update(record("a", path="/v2", rank=None))
    assert await one.get("a") == record("a", path="/v2", rank=None)


async def test_delete(registries: tuple[AdapterRegistry, AdapterRegistry]) -> None:
    one, other = registries
    await one.create(record("a"))
    await other.delete("a")
    assert await one.get("a") is None
    with pytest.raises(NotFound):
        await one.delete("a")
