"""Several limiters on one Redis, as several gateway instances: their sum obeys each limit, on
one server, under Sentinel and on a Cluster."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.errors import GatewayError
from gateway.limits import Limiter
from gateway.tenancy.auth import Principal
from gateway.tenancy.models import Limits
from tests.fixtures.redis_topologies import TOPOLOGIES
from tests.gateway.limits.conftest import MakeLimiter, principal

pytestmark = pytest.mark.parametrize("limiter_kind", TOPOLOGIES)
INSTANCES = 3


async def admitted_of(
    instances: list[Limiter], who: Principal, attempts: int, tokens: int
) -> list[object]:
    """`attempts` reservations at once, spread round-robin over the instances."""

    async def attempt(index: int) -> object | None:
        try:
            return await instances[index % len(instances)].reserve(who, tokens)
        except GatewayError as error:
            assert error.status == 429
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(attempts)))
    return [reservation for reservation in results if reservation is not None]


async def test_requests_per_minute_exact_across_instances(make_limiter: MakeLimiter) -> None:
    instances = [await make_limiter() for _ in range(INSTANCES)]
    who = principal(Limits(requests_per_minute=150))
    assert len(await admitted_of(instances, who, 400, 1)) == 150


async def test_tokens_per_minute_exact_across_instances(make_limiter: MakeLimiter) -> None:
    instances = [await make_limiter() for _ in range(INSTANCES)]
    who = principal(Limits(tokens_per_minute=1000))
    assert len(await admitted_of(instances, who, 300, 7)) == 1000 // 7


async def test_concurrency_and_budget_exact_across_instances(make_limiter: MakeLimiter) -> None:
    instances = [await make_limiter() for _ in range(INSTANCES)]
    concurrent = principal(Limits(max_concurrent=5), tenant_id="ten_c", key_id="key_c")
    assert len(await admitted_of(instances, concurrent, 60, 1)) == 5
    budget = principal(Limits(tokens_per_day=500), tenant_id="ten_b", key_id="key_b")
    assert len(await admitted_of(instances, budget, 60, 30)) == 500 // 30


async def test_settlements_from_every_instance_add_up(make_limiter: MakeLimiter) -> None:
    instances = [await make_limiter() for _ in range(INSTANCES)]
    who = principal(Limits(tokens_per_day=3000))
    reservations = await admitted_of(instances, who, 30, 100)
    assert len(reservations) == 30
    for index, reservation in enumerate(reservations):
        instances[index % INSTANCES].settle(reservation, 40)  # type: ignore[arg-type]
    # 30 x 40 used: exactly 1800 left, whichever instance asks
    for instance in instances:
        await instance.close()
    fresh = await make_limiter()
    assert len(await admitted_of([fresh], who, 30, 100)) == 18
