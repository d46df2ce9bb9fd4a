"""One suite for every store: whatever a test asserts holds for SQLite, for Postgres and for
Redis alike, on one Redis server, under Sentinel and on a Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from gateway.postgres.database import PostgresDatabase
from gateway.tenancy.models import ApiKey, AuditEntry, Limits, ModelRoute, Tenant
from gateway.tenancy.postgres_store import LISTENER_NAME, PostgresStore
from gateway.tenancy.redis_store import RedisStore
from gateway.tenancy.sqlite_store import SqliteStore
from gateway.tenancy.store import Conflict, InvalidationHandler, NotFound, Store
from tests.fixtures.redis import isolated_redis_store
from tests.fixtures.redis_topologies import TOPOLOGIES, kill_clients_named, topology_url

T0 = 1_700_000_000.123456


@pytest_asyncio.fixture(params=["sqlite", "postgres", *TOPOLOGIES], loop_scope="function")
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite_store = SqliteStore(tmp_path / "tenancy.db")
        yield sqlite_store
        await sqlite_store.close()
    elif request.param == "postgres":
        postgres_store = PostgresStore(PostgresDatabase(request.getfixturevalue("postgres_url")))
        yield postgres_store
        await postgres_store.close()
    else:
        async with isolated_redis_store(topology_url(request, request.param)) as redis_store:
            yield redis_store


@pytest_asyncio.fixture(loop_scope="function")
async def twin(store: Store, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A second instance on the same data, as another gateway process would open it."""
    if isinstance(store, RedisStore):
        other: Store = RedisStore(store.url, prefix=store.prefix)
    elif isinstance(store, PostgresStore):
        other = PostgresStore(PostgresDatabase(store.url))
    else:
        assert isinstance(store, SqliteStore)
        other = SqliteStore(store.path)
    yield other
    await other.close()


def make_tenant(name: str, created_at: float = T0) -> Tenant:
    return Tenant(
        id=f"tenant-{uuid.uuid4().hex[:12]}",
        name=name,
        models={
            "chat": ModelRoute("base-model", "tenant-a-lora"),
            "plain": ModelRoute("base-model"),
        },
        default_model="chat",
        limits=Limits(requests_per_minute=60, tokens_per_day=100_000),
        safety_policy="strict",
        metadata={"team": "search", "café": "ünïcode"},
        created_at=created_at,
        updated_at=created_at + 0.000001,
    )


def make_key(tenant_id: str, created_at: float = T0, **fields: object) -> ApiKey:
    return ApiKey(
        id=f"key-{uuid.uuid4().hex[:12]}",
        tenant_id=tenant_id,
        name="ci",
        prefix="sk-abc",
        secret_hash=uuid.uuid4().hex,
        created_at=created_at,
        allowed_models=["chat"],
        limits=Limits(max_concurrent=4),
        metadata={"owner": "ci"},
        **fields,  # type: ignore[arg-type]
    )


def make_audit(at: float, target_id: str, action: str) -> AuditEntry:
    return AuditEntry(
        id=f"audit-{uuid.uuid4().hex[:12]}",
        at=at,
        admin_key_id="admin-1",
        action=action,
        target_type="tenant",
        target_id=target_id,
        change={"before": None, "after": {"name": "x", "limits": [1, 2.5]}},
    )


async def test_tenant_round_trips_through_create_get_list_and_update(store: Store) -> None:
    tenant = make_tenant("acme")
    await store.create_tenant(tenant)
    assert await store.get_tenant(tenant.id) == tenant
    assert await store.list_tenants() == [tenant]

    tenant.models = {}
    tenant.default_model = None
    tenant.limits = Limits()
    tenant.enabled = False
    tenant.updated_at = T0 + 10.5
    await store.update_tenant(tenant)
    assert await store.get_tenant(tenant.id) == tenant
    assert await store.get_tenant("no-such-tenant") is None


async def test_tenants_are_listed_in_creation_order(store: Store) -> None:
    late, early, middle = make_tenant("c", T0 + 2), make_tenant("a", T0), make_tenant("b", T0 + 1)
    for tenant in (late, early, middle):
        await store.create_tenant(tenant)
    assert await store.list_tenants() == [early, middle, late]


async def test_duplicate_tenant_name_or_id_conflicts(store: Store) -> None:
    tenant = make_tenant("acme")
    await store.create_tenant(tenant)
    with pytest.raises(Conflict):
        await store.create_tenant(make_tenant("acme"))
    same_id = make_tenant("other-name")
    same_id.id = tenant.id
    with pytest.raises(Conflict):
        await store.create_tenant(same_id)
    assert await store.list_tenants() == [tenant]


async def test_concurrent_creates_of_one_name_give_exactly_one_conflict(store: Store) -> None:
    contenders = [make_tenant("contested") for _ in range(5)]
    outcomes = await asyncio.gather(
        *(store.create_tenant(tenant) for tenant in contenders), return_exceptions=True
    )
    assert outcomes.count(None) == 1
    assert all(isinstance(outcome, Conflict) for outcome in outcomes if outcome is not None)
    winner = contenders[outcomes.index(None)]
    assert await store.list_tenants() == [winner]


async def test_unknown_ids_raise_not_found(store: Store) -> None:
    ghost = make_tenant("ghost")
    with pytest.raises(NotFound):
        await store.update_tenant(ghost)
    with pytest.raises(NotFound):
        await store.delete_tenant(ghost.id)
    with pytest.raises(NotFound):
        await store.create_key(make_key(ghost.id))
    with pytest.raises(NotFound):
        await store.update_key(make_key(ghost.id))
    assert await store.list_tenants() == []
    assert await store.list_keys() == []


async def test_rename_onto_a_taken_name_conflicts_and_frees_the_old_name(store: Store) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex", T0 + 1)
    await store.create_tenant(acme)
    await store.create_tenant(globex)

    renamed = make_tenant("globex")
    renamed.id = acme.id
    with pytest.raises(Conflict):
        await store.update_tenant(renamed)
    assert await store.list_tenants() == [acme, globex]

    renamed.name = "acme-2"
    await store.update_tenant(renamed)
    assert await store.get_tenant(acme.id) == renamed
    reuse = make_tenant("acme", T0 + 2)
    await store.create_tenant(reuse)
    with pytest.raises(Conflict):
        await store.create_tenant(make_tenant("acme-2"))


async def test_key_round_trips_and_is_found_by_its_hash(store: Store) -> None:
    tenant = make_tenant("acme")
    await store.create_tenant(tenant)
    key = make_key(tenant.id, expires_at=T0 + 3600, last_used_at=T0 + 1)
    await store.create_key(key)
    assert await store.get_key(key.id) == key
    assert await store.find_key_by_hash(key.secret_hash) == key
    assert await store.find_key_by_hash("unknown-hash") is None
    assert await store.get_key("no-such-key") is None


async def test_duplicate_key_id_or_hash_conflicts(store: Store) -> None:
    tenant = make_tenant("acme")
    await store.create_tenant(tenant)
    key = make_key(tenant.id)
    await store.create_key(key)
    same_id = make_key(tenant.id)
    same_id.id = key.id
    with pytest.raises(Conflict):
        await store.create_key(same_id)
    same_secret = make_key(tenant.id)
    same_secret.secret_hash = key.secret_hash
    with pytest.raises(Conflict):
        await store.create_key(same_secret)
    assert await store.list_keys() == [key]


async def test_rotation_reindexes_current_and_grace_hashes(store: Store) -> None:
    tenant = make_tenant("acme")
    await store.create_tenant(tenant)
    key, other = make_key(tenant.id), make_key(tenant.id, T0 + 1)
    await store.create_key(key)
    await store.create_key(other)
    first_hash = key.secret_hash

    key.grace_secret_hash, key.grace_until = first_hash, T0 + 60
    key.secret_hash = uuid.uuid4().hex
    await store.update_key(key)
    assert await store.find_key_by_hash(key.secret_hash) == key
    assert await store.find_key_by_hash(first_hash) == key

    key.grace_secret_hash, key.grace_until = None, None
    await store.update_key(key)
    assert await store.find_key_by_hash(first_hash) is None
    assert await store.find_key_by_hash(key.secret_hash) == key

    stolen = make_key(tenant.id)
    stolen.id, stolen.secret_hash = key.id, other.secret_hash
    with pytest.raises(Conflict):
        await store.update_key(stolen)
    assert await store.find_key_by_hash(key.secret_hash) == key
    assert await store.find_key_by_hash(other.secret_hash) == other


async def test_keys_are_listed_in_creation_order_by_page_and_tenant(store: Store) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    await store.create_tenant(acme)
    await store.create_tenant(globex)
    offsets_and_tenants = [(3, acme), (0, globex), (4, globex), (1, acme), (2, acme)]
    keys = {offset: make_key(tenant.id, T0 + offset) for offset, tenant in offsets_and_tenants}
    for key in keys.values():
        await store.create_key(key)
    in_order = [keys[offset] for offset in range(5)]

    assert await store.list_keys() == in_order
    assert await store.list_keys(offset=1, limit=2) == in_order[1:3]
    assert await store.list_keys(offset=4, limit=10) == in_order[4:]
    assert await store.list_keys(offset=5) == []
    assert await store.list_keys(limit=0) == []
    assert await store.list_keys(tenant_id=acme.id) == [keys[1], keys[2], keys[3]]
    assert await store.list_keys(tenant_id=acme.id, offset=1, limit=1) == [keys[2]]
    assert await store.list_keys(tenant_id=globex.id) == [keys[0], keys[4]]
    assert await store.list_keys(tenant_id="no-such-tenant") == []


async def test_touch_keys_records_last_use_and_never_moves_it_back(store: Store) -> None:
    tenant = make_tenant("acme")
    await store.create_tenant(tenant)
    used, unused = make_key(tenant.id), make_key(tenant.id, T0 + 1)
    await store.create_key(used)
    await store.create_key(unused)

    await store.touch_keys({used.id: T0 + 100.000123, "no-such-key": T0})
    await store.touch_keys({used.id: T0 + 50})
    await store.touch_keys({})
    used.last_used_at = T0 + 100.000123
    assert await store.get_key(used.id) == used
    assert await store.find_key_by_hash(used.secret_hash) == used
    assert await store.list_keys() == [used, unused]
    assert await store.get_key("no-such-key") is None


async def test_deleting_a_tenant_revokes_its_keys_and_frees_its_name(store: Store) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex")
    await store.create_tenant(acme)
    await store.create_tenant(globex)
    active = make_key(acme.id)
    revoked_earlier = make_key(acme.id, T0 + 1, revoked_at=T0 + 5)
    bystander = make_key(globex.id, T0 + 2)
    for key in (active, revoked_earlier, bystander):
        await store.create_key(key)

    await store.delete_tenant(acme.id)
    assert await store.get_tenant(acme.id) is None
    assert await store.list_tenants() == [globex]
    revoked = await store.get_key(active.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert revoked.revoked_at > T0 + 5
    active.revoked_at = revoked.revoked_at
    assert await store.list_keys(tenant_id=acme.id) == [active, revoked_earlier]
    assert await store.find_key_by_hash(active.secret_hash) == active
    assert await store.get_key(bystander.id) == bystander
    await store.create_tenant(make_tenant("acme"))
    with pytest.raises(NotFound):
        await store.delete_tenant(acme.id)


async def test_audit_is_newest_first_and_filters_by_target_action_and_time(store: Store) -> None:
    entries = [
        make_audit(T0, "tenant-1", "tenant.create"),
        make_audit(T0 + 1, "tenant-2", "tenant.create"),
        make_audit(T0 + 2, "tenant-1", "tenant.update"),
        make_audit(T0 + 3, "tenant-1", "tenant.create"),
        make_audit(T0 + 4, "tenant-2", "tenant.delete"),
    ]
    for entry in entries:
        await store.append_audit(entry)
    newest_first = entries[::-1]

    assert await store.list_audit() == newest_first
    assert await store.list_audit(limit=2) == newest_first[:2]
    assert await store.list_audit(target_id="tenant-1") == [entries[3], entries[2], entries[0]]
    assert await store.list_audit(action="tenant.create") == [entries[3], entries[1], entries[0]]
    assert await store.list_audit(target_id="tenant-1", action="tenant.create") == [
        entries[3],
        entries[0],
    ]
    assert await store.list_audit(target_id="tenant-1", action="tenant.create", limit=1) == [
        entries[3]
    ]
    assert await store.list_audit(since=T0 + 2) == newest_first[:3]
    assert await store.list_audit(action="tenant.create", since=T0 + 1) == [entries[3], entries[1]]
    assert await store.list_audit(target_id="nobody") == []
    with pytest.raises(Conflict):
        await store.append_audit(entries[0])


@contextlib.asynccontextmanager
async def listening(store: Store, handler: InvalidationHandler) -> AsyncIterator[None]:
    listener = asyncio.create_task(store.listen_invalidations(handler))
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def publish_until_heard(publisher: Store, *heard: asyncio.Event) -> None:
    """Listeners subscribe in the background: publish until every one has heard, rather than
    guess when they are ready. The overall timeout only turns a hang into a failure."""
    async with asyncio.timeout(15):
        while not all(event.is_set() for event in heard):
            await publisher.publish_invalidation()
            waits = [asyncio.create_task(event.wait()) for event in heard]
            _, pending = await asyncio.wait(waits, timeout=0.5)
            for wait in pending:
                wait.cancel()


async def test_invalidation_reaches_every_instance(store: Store, twin: Store) -> None:
    heard_here, heard_there = asyncio.Event(), asyncio.Event()
    async with listening(store, heard_here.set), listening(twin, heard_there.set):
        await publish_until_heard(store, heard_here, heard_there)
        heard_here.clear()
        heard_there.clear()
        await publish_until_heard(twin, heard_here, heard_there)


async def test_async_handlers_are_awaited(store: Store) -> None:
    heard = asyncio.Event()

    async def handler() -> None:
        await asyncio.sleep(0)
        heard.set()

    async with listening(store, handler):
        await publish_until_heard(store, heard)


async def test_redis_listener_resubscribes_and_notifies_after_losing_its_connection(
    redis_topology_url: str,
) -> None:
    heard = asyncio.Event()
    async with (
        isolated_redis_store(redis_topology_url) as redis_store,
        listening(redis_store, heard.set),
    ):
        await publish_until_heard(redis_store, heard)
        heard.clear()
        assert await kill_clients_named(redis_topology_url, redis_store.listener_name) == 1
        # Nothing is published: only the re-subscription may call the handler now.
        await asyncio.wait_for(heard.wait(), timeout=15)
        heard.clear()
        await publish_until_heard(redis_store, heard)


async def test_postgres_listener_listens_again_and_notifies_after_losing_its_connection(
    postgres_url: str,
) -> None:
    heard = asyncio.Event()
    postgres_store = PostgresStore(PostgresDatabase(postgres_url))
    try:
        async with listening(postgres_store, heard.set):
            await publish_until_heard(postgres_store, heard)
            heard.clear()
            async with await psycopg.AsyncConnection.connect(postgres_url) as admin:
                ended = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND datname = current_database()",
                    (LISTENER_NAME,),
                )
                assert await ended.fetchall() == [(True,)]
            # Nothing is published: only the new LISTEN may call the handler now.
            await asyncio.wait_for(heard.wait(), timeout=15)
            heard.clear()
            await publish_until_heard(postgres_store, heard)
    finally:
        await postgres_store.close()
