"""One suite for every registry store: what holds for SQLite holds for Postgres and Redis (one
server, Sentinel, Cluster), and a second instance on the same data (another gateway process)
sees every change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.adapters.models import AdapterRecord
from gateway.adapters.postgres_registry import PostgresAdapterRegistry
from gateway.adapters.redis_registry import RedisAdapterRegistry
from gateway.adapters.registry import AdapterRegistry
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.tenancy.store import Conflict, NotFound
from tests.fixtures.stores import STORE_KINDS, two_store_sets

REGISTRIES = {"sqlite": SqliteAdapterRegistry, "postgres": PostgresAdapterRegistry}


@pytest_asyncio.fixture(params=STORE_KINDS, loop_scope="function")
async def registries(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[AdapterRegistry, AdapterRegistry]]:
    """Two registries on the same data."""
    async with two_store_sets(request, request.param, tmp_path) as (first, second):
        assert isinstance(first.adapters, REGISTRIES.get(request.param, RedisAdapterRegistry))
        yield first.adapters, second.adapters


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
