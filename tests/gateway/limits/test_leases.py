"""Concurrency slots are leases: renewed while a request runs, expired when its holder is gone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable

import pytest

from gateway.core.errors import GatewayError
from gateway.limits import Limiter
from gateway.tenancy.models import Limits
from tests.gateway.limits.conftest import MakeLimiter, principal
from tests.gateway.limits.test_semantics import refused, until

LEASE_TTL_S = 0.6
ONE_SLOT = principal(Limits(max_concurrent=1))


def admits(limiter: Limiter) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            await limiter.reserve(ONE_SLOT, 1)
        except GatewayError:
            return False
        return True

    return check


@pytest.mark.parametrize("limiter_kind", ["redis"])
async def test_a_crashed_instance_leaks_no_slot(make_limiter: MakeLimiter) -> None:
    crashed = await make_limiter(lease_ttl_s=LEASE_TTL_S)
    survivor = await make_limiter(lease_ttl_s=LEASE_TTL_S)
    await crashed.reserve(ONE_SLOT, 1)
    await crashed.close()  # it stops renewing and never settles, as if its process died
    await refused(survivor, ONE_SLOT)
    await until(admits(survivor))


async def test_a_running_request_keeps_its_slot(
    make_limiter: MakeLimiter, limiter_kind: str
) -> None:
    holder = await make_limiter(lease_ttl_s=LEASE_TTL_S)
    # with Redis, another instance sees the lease; in process, the same limiter does
    other = await make_limiter(lease_ttl_s=LEASE_TTL_S) if limiter_kind == "redis" else holder
    running = await holder.reserve(ONE_SLOT, 1)
    await asyncio.sleep(LEASE_TTL_S * 4)  # several TTLs: only renewal keeps the lease
    await refused(other, ONE_SLOT)
    holder.settle(running, 1)
    await until(admits(other))


async def test_a_reservation_dropped_without_settling_frees_its_slot(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter(lease_ttl_s=LEASE_TTL_S)
    forgotten = await limiter.reserve(ONE_SLOT, 1)
    await refused(limiter, ONE_SLOT)
    del forgotten
    gc.collect()
    await until(admits(limiter))
