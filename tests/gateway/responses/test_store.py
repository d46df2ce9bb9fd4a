"""One suite for both response stores: what holds for SQLite holds for Redis (one server,
Sentinel, Cluster), and a second instance on the same data (another gateway process) sees
every change."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.responses.postgres_store import PostgresResponseStore
from gateway.responses.redis_store import RedisResponseStore
from gateway.responses.sqlite_store import PRUNE_BATCH, SqliteResponseStore
from gateway.responses.store import ResponseStore, StoredResponse, new_response_id
from tests.fixtures.stores import STORE_KINDS, two_store_sets

HOUR = 3600.0


STORES = {"sqlite": SqliteResponseStore, "postgres": PostgresResponseStore}


@pytest_asyncio.fixture(params=STORE_KINDS, loop_scope="function")
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ResponseStore, ResponseStore]]:
    """Two stores on the same data."""
    async with two_store_sets(request, request.param, tmp_path) as (first, second):
        assert isinstance(first.responses, STORES.get(request.param, RedisResponseStore))
        yield first.responses, second.responses


def stored(
    tenant_id: str = "tenant_a", status: str = "completed", expires_in: float = HOUR
) -> StoredResponse:
    response = {"id": new_response_id(), "object": "response", "status": status, "output": []}
    items = [{"type": "message", "role": "user", "content": "hi"}]
    return StoredResponse(tenant_id, response, items, time.time() + expires_in)


async def test_a_stored_response_is_read_back_by_another_instance(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    one, other = stores
    record = stored()
    await one.put(record)
    assert await other.get("tenant_a", record.id) == record


async def test_another_tenants_id_is_not_found(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    one, other = stores
    record = stored()
    await one.put(record)
    assert await other.get("tenant_b", record.id) is None
    assert not await other.delete("tenant_b", record.id)
    assert await other.get("tenant_a", record.id) == record  # untouched by the other tenant


async def test_delete_removes_the_response_and_its_events(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    one, other = stores
    record = stored(status="in_progress")
    await one.put(record)
    await one.append_events(record, b"event: a\ndata: {}\n\n")
    assert await other.delete("tenant_a", record.id)
    assert await other.get("tenant_a", record.id) is None
    assert await other.events("tenant_a", record.id) == b""
    assert not await one.delete("tenant_a", record.id)


async def test_events_come_back_in_the_order_they_were_appended(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    one, other = stores
    record = stored(status="in_progress")
    await one.put(record)
    batches = [f"event: e{n}\ndata: {{}}\n\n".encode() for n in range(12)]
    for batch in batches:
        await one.append_events(record, batch)
    assert await other.events("tenant_a", record.id) == b"".join(batches)


async def test_only_a_running_response_is_replaced_conditionally(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    one, other = stores
    record = stored(status="queued")
    await one.put(record)
    cancelled = StoredResponse(
        record.tenant_id, {**record.response, "status": "cancelled"}, [], record.expires_at
    )
    assert await other.put_if_running(cancelled)
    finished = StoredResponse(
        record.tenant_id, {**record.response, "status": "completed"}, [], record.expires_at
    )
    assert not await one.put_if_running(finished)  # a cancellation is never overwritten
    read = await one.get("tenant_a", record.id)
    assert read is not None and read.status == "cancelled"
    assert not await one.put_if_running(stored())  # nor is a response created by it


async def test_an_expired_response_is_gone(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    one, other = stores
    record = stored(expires_in=1.0)  # long enough to be read back on a busy machine
    await one.put(record)
    assert await other.get("tenant_a", record.id) == record
    time.sleep(1.1)
    assert await other.get("tenant_a", record.id) is None
    assert not await other.put_if_running(record)


async def test_expired_responses_are_pruned_in_batches(
    stores: tuple[ResponseStore, ResponseStore],
) -> None:
    store = stores[0]
    if not isinstance(store, SqliteResponseStore | PostgresResponseStore):
        pytest.skip("Redis expires responses by itself")
    expired = [stored(expires_in=-1.0) for _ in range(PRUNE_BATCH + 3)]
    kept = stored()
    for record in [*expired, kept]:
        await store.put(record)
    await store.append_events(expired[0], b"event: a\ndata: {}\n\n")
    assert await store.prune(time.time()) == PRUNE_BATCH
    assert await store.prune(time.time()) == 3
    assert await store.prune(time.time()) == 0
    assert await store.get("tenant_a", kept.id) == kept
    assert await store.events("tenant_a", expired[0].id) == b""
