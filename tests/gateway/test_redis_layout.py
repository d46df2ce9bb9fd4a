"""The key names on each topology. One server and Sentinel keep the layout that earlier releases
wrote, so an existing deployment's keys stay valid; a Cluster adds hash tags (one slot for
the key store, one per tenant for the limiter)."""

from __future__ import annotations

import uuid

from gateway.limits import open_limiter
from gateway.redis_client import parse_redis_url, redis_client
from gateway.settings import LimitsSettings, StoreSettings
from gateway.tenancy.models import Limits
from gateway.tenancy.redis_store import RedisStore
from tests.fixtures.redis import delete_prefixed_keys
from tests.gateway.limits.conftest import principal
from tests.gateway.tenancy.test_store import make_key, make_tenant


async def existing(url: str, *keys: str) -> list[str]:
    client = redis_client(url, 5.0)
    try:
        return [key for key in keys if await client.exists(key)]
    finally:
        await client.aclose()


async def test_the_key_store_layout(redis_topology_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    store = RedisStore(redis_topology_url, prefix)
    tenant = make_tenant("layout")
    key = make_key(tenant.id)
    try:
        await store.create_tenant(tenant)
        await store.create_key(key)
        space = prefix + ("{keys}:" if parse_redis_url(redis_topology_url).is_cluster else "")
        names = [f"tenant:{tenant.id}", f"tenant-name:{tenant.name}", "tenants", f"key:{key.id}"]
        names += [f"key-hash:{key.secret_hash}", "keys", f"tenant-keys:{tenant.id}"]
        expected = [space + name for name in names]
        assert await existing(redis_topology_url, *expected) == expected
    finally:
        await store.close()
        await delete_prefixed_keys(redis_topology_url, prefix)


async def test_the_limiter_layout(redis_topology_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    limiter = open_limiter(
        LimitsSettings(), StoreSettings(redis_url=redis_topology_url, redis_prefix=prefix)
    )
    await limiter.start()
    try:
        await limiter.reserve(principal(Limits(requests_per_minute=5), Limits(tokens_per_day=9)), 1)
        tag = "{ten_1}:" if parse_redis_url(redis_topology_url).is_cluster else ""
        expected = [f"{prefix}rl:{tag}{scope}" for scope in ("t:ten_1:l", "k:key_1:h")]
        assert await existing(redis_topology_url, *expected) == expected
    finally:
        await limiter.close()
        await delete_prefixed_keys(redis_topology_url, prefix)
