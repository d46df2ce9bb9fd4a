"""Redis in trouble: stopped, restarted, or paused. Fail-open falls back to the local limiter,
fail-closed answers 503; no call waits much past the timeout, and recovery needs nobody."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from gateway.core.errors import GatewayError
from gateway.limits import Limiter
from gateway.tenancy.models import Limits
from tests.gateway.limits.conftest import MakeLimiter, RedisServer, principal
from tests.gateway.limits.test_semantics import refused, until

pytestmark = pytest.mark.parametrize("limiter_kind", ["redis"])
TIMEOUT_S = 0.05
# Far above the 50 ms timeout, far below how long Redis stays away: a call that returns
# within it did not wait for Redis to come back.
BOUNDED_S = 1.0
PAUSE_MS = 3000
WHO = principal(Limits(requests_per_minute=10_000))


async def failover_limiter(make: MakeLimiter, server: RedisServer, policy: str) -> Limiter:
    return await make(
        redis_url=server.url,
        redis_timeout_s=TIMEOUT_S,
        redis_retry_interval_s=0.2,
        failure_policy=policy,
    )


async def timed_reserve(limiter: Limiter, who=WHO) -> tuple[float, GatewayError | None]:
    started = time.monotonic()
    try:
        limiter.settle(await limiter.reserve(who, 1), 1)
        error = None
    except GatewayError as refused_error:
        error = refused_error
    return time.monotonic() - started, error


def shared_keys(server: RedisServer) -> int:
    with redis.Redis.from_url(server.url, socket_timeout=5) as client:
        return sum(1 for _ in client.scan_iter(match="test-limits-*"))


async def test_fail_open_with_redis_stopped(
    make_limiter: MakeLimiter, own_redis: RedisServer
) -> None:
    limiter = await failover_limiter(make_limiter, own_redis, "open")
    own_redis.stop()
    two_per_minute = principal(Limits(requests_per_minute=2), tenant_id="ten_2", key_id="key_2")
    for _ in range(2):
        elapsed, error = await timed_reserve(limiter, two_per_minute)
        assert error is None and elapsed < BOUNDED_S
    # the local limiter still enforces the limits on this instance
    assert "requests per minute" in (await refused(limiter, two_per_minute)).message
    assert limiter.stats.redis_failures >= 1
    assert limiter.stats.local_fallbacks == 3


async def test_fail_closed_with_redis_stopped(
    make_limiter: MakeLimiter, own_redis: RedisServer
) -> None:
    limiter = await failover_limiter(make_limiter, own_redis, "closed")
    own_redis.stop()
    for _ in range(3):
        elapsed, error = await timed_reserve(limiter)
        assert error is not None and elapsed < BOUNDED_S
        assert error.status == 503 and error.code == "rate_limiter_unavailable"
        assert error.type == "server_error" and error.headers["retry-after"] == "1"
    assert limiter.stats.unavailable == 3


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_slow_redis_never_holds_a_request_past_the_timeout(
    make_limiter: MakeLimiter, own_redis: RedisServer, policy: str
) -> None:
    limiter = await failover_limiter(make_limiter, own_redis, policy)
    assert (await timed_reserve(limiter))[1] is None
    with redis.Redis.from_url(own_redis.url) as client:
        client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
    paused_until = time.monotonic() + PAUSE_MS / 1000
    outcomes = []
    while time.monotonic() < paused_until - BOUNDED_S:
        outcomes.append(await timed_reserve(limiter))
        await asyncio.sleep(0.05)
    assert len(outcomes) > 5
    assert all(elapsed < BOUNDED_S for elapsed, _ in outcomes)
    if policy == "open":
        assert all(error is None for _, error in outcomes)
        assert limiter.stats.local_fallbacks == len(outcomes)
    else:
        assert all(error is not None and error.status == 503 for _, error in outcomes)
    # once the pause is over, requests go through Redis again by themselves

    async def back_on_redis() -> bool:
        before = limiter.stats.local_fallbacks + limiter.stats.unavailable
        _, error = await timed_reserve(limiter)
        return error is None and limiter.stats.local_fallbacks + limiter.stats.unavailable == before

    await until(back_on_redis)


async def test_redis_stopped_and_restarted_under_load(
    make_limiter: MakeLimiter, own_redis: RedisServer
) -> None:
    limiter = await failover_limiter(make_limiter, own_redis, "open")
    slowest = 0.0
    errors: list[GatewayError] = []
    running = True

    async def client() -> None:
        nonlocal slowest
        while running:
            elapsed, error = await timed_reserve(limiter)
            slowest = max(slowest, elapsed)
            if error is not None:
                errors.append(error)
            await asyncio.sleep(0.01)

    clients = [asyncio.create_task(client()) for _ in range(8)]
    try:
        await asyncio.sleep(0.3)  # let the load run on Redis first
        own_redis.stop()
        await until(lambda: _fallbacks_after(limiter, 20))
        own_redis.start()  # a fresh, empty Redis on the same port
        await until(lambda: _has_keys(own_redis))
    finally:
        running = False
        await asyncio.gather(*clients)
    assert errors == []
    assert slowest < BOUNDED_S
    assert limiter.stats.redis_failures >= 1


async def _fallbacks_after(limiter: Limiter, count: int) -> bool:
    return limiter.stats.local_fallbacks >= count


async def _has_keys(server: RedisServer) -> bool:
    return await asyncio.to_thread(shared_keys, server) > 0
