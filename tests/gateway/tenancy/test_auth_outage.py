"""API keys while the key store (a real redis-server of this module's own) is frozen or gone.

Recently validated keys keep working from memory (serve-stale); a key that cannot be checked
gets 503 store_unavailable with Retry-After, never 401; a flood of invalid keys never evicts
the valid ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import pytest_asyncio

from gateway.core.errors import GatewayError, StoreUnavailable
from gateway.tenancy import auth
from gateway.tenancy.auth import KeyAuthenticator
from gateway.tenancy.redis_store import RedisStore
from gateway.tenancy.secrets import KeyHasher, new_secret
from tests.fixtures.redis import OwnRedis, delete_prefixed_keys
from tests.gateway.tenancy.test_store import make_key, make_tenant

TTL_S = 0.05
HASHER = KeyHasher(b"outage-test-secret")


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    with OwnRedis(tmp_path_factory.mktemp("auth-redis"), append_only=True) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="function")
async def store(own_redis: OwnRedis) -> AsyncIterator[RedisStore]:
    store = RedisStore(own_redis.url, f"test-{secrets.token_hex(6)}:", timeout_s=0.2, budget_s=0.5)
    yield store
    await store.close()
    await delete_prefixed_keys(own_redis.url, store.prefix)


async def new_key(store: RedisStore) -> str:
    """A key in the store; its secret."""
    tenant = make_tenant(f"outage-{secrets.token_hex(4)}")
    await store.create_tenant(tenant)
    secret = new_secret()
    key = replace(make_key(tenant.id), secret_hash=HASHER.hash(secret), allowed_models=None)
    await store.create_key(key)
    return secret


async def validated_key(store: RedisStore, authenticator: KeyAuthenticator) -> str:
    """A new key in the store, just validated (and so cached) by `authenticator`; its
    secret."""
    known = await new_key(store)
    await authenticator.authenticate(known)
    return known


def expire_cache() -> None:
    time.sleep(TTL_S * 2)


async def test_a_recently_validated_key_works_while_redis_is_frozen(
    store: RedisStore, own_redis: OwnRedis
) -> None:
    authenticator = KeyAuthenticator(store, HASHER, TTL_S, stale_window_s=60)
    known = await validated_key(store, authenticator)
    fresh = await new_key(store)  # created, but never seen by this instance
    expire_cache()
    with own_redis.frozen():
        # the first call finds Redis frozen (waits its budget); the later ones do not wait
        assert (await authenticator.authenticate(known)).key.tenant_id
        started = time.monotonic()
        for _ in range(20):
            await authenticator.authenticate(known)
        assert time.monotonic() - started < 0.4  # less than one budget for all 20
        with pytest.raises(StoreUnavailable) as caught:
            await authenticator.authenticate(fresh)
    refused = caught.value
    assert (refused.status, refused.code) == (503, "store_unavailable")
    assert refused.headers["retry-after"]
    assert "keys store" in refused.message
    # Redis is back: at most a probe still out (answered once Redis runs) stands in the way
    deadline = time.monotonic() + 2.0
    while not store.health.available and time.monotonic() < deadline:
        with contextlib.suppress(StoreUnavailable):
            await authenticator.authenticate(fresh)
        await asyncio.sleep(0.01)
    assert (await authenticator.authenticate(fresh)).key.tenant_id


async def test_unknown_keys_get_503_not_401_while_redis_is_down(
    store: RedisStore, own_redis: OwnRedis
) -> None:
    authenticator = KeyAuthenticator(store, HASHER, TTL_S, stale_window_s=60)
    with own_redis.killed():
        for _ in range(3):
            with pytest.raises(GatewayError) as caught:
                await authenticator.authenticate(new_secret())
            assert caught.value.status == 503
        # not a gateway key at all: no store needed to refuse it
        with pytest.raises(GatewayError) as caught:
            await authenticator.authenticate("not-a-key")
        assert caught.value.status == 401
    with pytest.raises(GatewayError) as caught:
        await authenticator.authenticate(new_secret())
    assert caught.value.status == 401  # Redis is back: really unknown


async def test_the_stale_copy_serves_only_within_its_window(
    store: RedisStore, own_redis: OwnRedis
) -> None:
    authenticator = KeyAuthenticator(store, HASHER, TTL_S, stale_window_s=0.3)
    known = await validated_key(store, authenticator)
    expire_cache()
    with own_redis.frozen():
        await authenticator.authenticate(known)
        time.sleep(0.4)
        with pytest.raises(StoreUnavailable):
            await authenticator.authenticate(known)


async def test_an_invalidation_keeps_the_stale_copy(store: RedisStore, own_redis: OwnRedis) -> None:
    """An invalidation (e.g. after re-subscribing when Redis came back) makes keys be checked
    again, but must not throw away the copy a following outage would serve."""
    authenticator = KeyAuthenticator(store, HASHER, 60.0, stale_window_s=60)
    known = await validated_key(store, authenticator)
    authenticator.invalidate()
    with own_redis.frozen():
        assert (await authenticator.authenticate(known)).key.tenant_id


async def test_a_flood_of_invalid_keys_never_evicts_valid_ones(
    store: RedisStore, own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "_MAX_CACHED", 1000)
    authenticator = KeyAuthenticator(store, HASHER, 60.0, stale_window_s=0)
    known = await validated_key(store, authenticator)
    for _ in range(3000):  # three times what the cache holds, all looked up in the store
        with pytest.raises(GatewayError):
            await authenticator.authenticate(new_secret())
    with own_redis.frozen():  # so the valid key can only come from the fresh cache
        assert (await authenticator.authenticate(known)).key.tenant_id
