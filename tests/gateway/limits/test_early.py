"""Early dispatch (gateway/limits/early.py): far from every limit a request goes upstream
while Redis admits it; near a limit, or refused, nothing changes for the client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.core.errors import GatewayError
from gateway.limits import Limiter, open_limiter
from gateway.settings import LimitsSettings, StoreSettings
from gateway.tenancy.models import Limits
from tests.fixtures.gateway import Gateway, limited_key
from tests.fixtures.metrics import metric_value
from tests.gateway.limits.conftest import MakeLimiter, principal
from tests.gateway.limits.test_semantics import until

EARLY = "vllm_gateway_rate_limit_early_dispatches_total"


@pytest.fixture
def limiter_kind() -> str:
    return "redis"  # the local limiter answers at once: it never dispatches early


async def test_spare_room_counts_every_limit_of_every_scope(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    who = principal(
        Limits(requests_per_minute=10, tokens_per_minute=1000, tokens_per_day=10_000),
        Limits(max_concurrent=5),
    )
    # after one request of 100 tokens: 9 more requests, 9 more of 100 tokens, 4 more slots
    assert (await limiter.reserve(who, 100)).spare == 4
    assert (await limiter.reserve(who, 100)).spare == 3
    roomy = principal(Limits(requests_per_minute=1000), tenant_id="ten_2", key_id="key_2")
    assert (await limiter.reserve(roomy, 100)).spare == 999


async def test_local_limiter_knows_no_spare_room() -> None:
    local = open_limiter(LimitsSettings(), StoreSettings())  # no Redis URL: in-process
    await local.start()
    who = principal(Limits(requests_per_minute=10))
    assert (await local.reserve(who, 1)).spare is None
    assert not local.admit(who, 1).early
    await local.close()


async def test_early_only_after_an_answer_and_within_half_the_room(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter()
    who = principal(Limits(requests_per_minute=10))
    first = limiter.admit(who, 1)
    assert not first.early  # nothing known yet: Redis answers first
    await first.cleared()
    assert (await first.confirmed()).spare == 9
    # 9 more would fit: this instance sends at most 4 early before an answer comes back
    admissions = [limiter.admit(who, 1) for _ in range(6)]
    assert [admission.early for admission in admissions] == [True] * 4 + [False] * 2
    for admission in admissions:
        await admission.cleared()
        await admission.confirmed()
    assert limiter.stats.early_sent == 4 and limiter.stats.early_refused == 0


async def test_no_early_dispatch_when_switched_off(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(early_dispatch=False)
    who = principal(Limits(requests_per_minute=100))
    for _ in range(3):
        admission = limiter.admit(who, 1)
        assert not admission.early
        await admission.cleared()


async def test_early_request_refused_when_another_instance_took_the_room(
    make_limiter: MakeLimiter,
) -> None:
    here, there = await make_limiter(), await make_limiter()
    who = principal(Limits(requests_per_minute=4))
    await (admission := here.admit(who, 1)).cleared()
    assert (await admission.confirmed()).spare == 3  # room for one early request here
    for _ in range(3):
        await there.reserve(who, 1)  # the other instance takes the rest of the minute
    early = here.admit(who, 1)
    assert early.early
    await early.cleared()  # does not wait: the caller goes upstream meanwhile
    with pytest.raises(GatewayError) as refused:
        await early.confirmed()
    assert refused.value.status == 429 and refused.value.code == "rate_limit_exceeded"
    assert here.stats.early_refused == 1 and here.stats.refused == 1
    assert not here.admit(who, 1).early  # refused once: the next one waits for Redis again


async def test_early_reservation_settled_when_it_lands_after_the_client_left(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter()
    who = principal(Limits(max_concurrent=3))
    held = await limiter.reserve(who, 1)  # one slot held throughout; spare room 2
    early = limiter.admit(who, 1)
    assert early.early
    early.settle(1)  # the client left before Redis answered: its slot must not leak

    async def two_more_fit() -> bool:
        return await _fit(limiter, who, 2)

    await until(two_more_fit)
    limiter.settle(held, 1)


async def test_cancelled_confirmation_keeps_the_reservation_for_settle(
    make_limiter: MakeLimiter,
) -> None:
    limiter: Limiter = await make_limiter()
    who = principal(Limits(max_concurrent=2))
    await limiter.reserve(who, 1)  # spare room 1: not enough for early dispatch
    assert not limiter.admit(who, 1).early
    roomy = principal(Limits(max_concurrent=100), tenant_id="ten_3", key_id="key_3")
    limiter.settle(await limiter.reserve(roomy, 1), 1)
    early = limiter.admit(roomy, 1)
    assert early.early
    waiting = asyncio.create_task(early.confirmed())
    await asyncio.sleep(0)
    waiting.cancel()  # the client went away while the gateway waited for Redis
    with pytest.raises(asyncio.CancelledError):
        await waiting
    early.settle(1)  # still settles the reservation once it lands
    await until(lambda: _fit(limiter, roomy, 100))


async def _fit(limiter: Limiter, who: object, count: int) -> bool:
    """Whether `count` more requests are admitted at once (all settled again afterwards)."""
    reservations = []
    try:
        for _ in range(count):
            reservations.append(await limiter.reserve(who, 1))  # type: ignore[arg-type]
    except GatewayError:
        return False
    finally:
        for reservation in reservations:
            limiter.settle(reservation, 1)
    return True


@pytest.mark.limits_e2e
@pytest.mark.parametrize("stream", [False, True])
def test_refused_early_request_is_a_plain_429_through_the_gateway(
    gateways_on_redis: list[Gateway], stream: bool
) -> None:
    here, there = gateways_on_redis[0], gateways_on_redis[1]
    key = limited_key(here, {"requests_per_minute": 8})
    body: dict[str, object] = {
        "model": "base",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": stream,
    }

    def chat(gateway: Gateway) -> httpx.Response:
        return httpx.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )

    # Redis answered before the call: spare room 7, of which two gateways may each send early
    # up to a quarter
    assert chat(here).status_code == 200
    assert [chat(there).status_code for _ in range(7)] == [200] * 7  # the minute is used up
    refused = chat(here)  # sent upstream early, then refused by Redis
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/json")
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "requests per minute" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert metric_value(here.url, EARLY, outcome="sent") == 1
    assert metric_value(here.url, EARLY, outcome="refused") == 1
