"""What each limit admits and refuses, for the in-process and the Redis limiter alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.errors import GatewayError
from gateway.limits import Limiter
from gateway.tenancy.models import Limits
from tests.gateway.limits.conftest import MakeLimiter, principal


async def refused(limiter: Limiter, who: object, tokens: int = 1) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await limiter.reserve(who, tokens)  # type: ignore[arg-type]
    assert caught.value.status == 429
    return caught.value


async def until(condition, timeout: float = 10.0) -> None:
    """Wait for a background effect (a settlement, an expiry) to become visible."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the effect never became visible"
        await asyncio.sleep(0.05)


def headers_of(reservation) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in reservation.headers}


async def test_requests_per_minute(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    who = principal(Limits(requests_per_minute=3))
    remaining = [headers_of(await limiter.reserve(who, 10)) for _ in range(3)]
    assert [h["x-ratelimit-remaining-requests"] for h in remaining] == ["2", "1", "0"]
    assert remaining[0]["x-ratelimit-limit-requests"] == "3"
    assert "x-ratelimit-limit-tokens" not in remaining[0]
    error = await refused(limiter, who)
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert "requests per minute" in error.message and "tenant 'tenant-ten_1'" in error.message
    assert 1 <= int(error.headers["retry-after"]) <= 60
    assert 0 < int(error.headers["retry-after-ms"]) <= 60_000
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert limiter.stats.refused == 1


async def test_tokens_per_minute_and_settlement(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    who = principal(Limits(tokens_per_minute=100))
    first = await limiter.reserve(who, 60)
    assert headers_of(first)["x-ratelimit-remaining-tokens"] == "40"
    error = await refused(limiter, who, 50)
    assert error.type == "tokens" and "tokens per minute" in error.message
    assert "used 60, requested 50" in error.message
    limiter.settle(first, 20)  # used less than reserved: 40 tokens come back

    async def fits() -> bool:
        try:
            limiter.settle(await limiter.reserve(who, 50), 50)
        except GatewayError:
            return False
        return True

    await until(fits)
    # 20 + 50 used: one that uses more than it reserved is charged the difference
    extra = await limiter.reserve(who, 10)
    limiter.settle(extra, 30)

    async def full() -> bool:
        try:
            limiter.settle(await limiter.reserve(who, 1), 0)
        except GatewayError:
            return True
        return False

    await until(full)


async def test_request_larger_than_the_token_limit_can_never_pass(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter()
    error = await refused(limiter, principal(Limits(tokens_per_minute=100)), 101)
    assert "Request too large" in error.message and "retry-after" not in error.headers


async def test_concurrent_requests(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    who = principal(Limits(max_concurrent=2))
    first, _ = await limiter.reserve(who, 1), await limiter.reserve(who, 1)
    error = await refused(limiter, who)
    assert error.type == "requests" and "concurrent requests" in error.message
    assert error.headers["retry-after"] == "1"
    limiter.settle(first, 1)

    async def slot_free() -> bool:
        try:
            await limiter.reserve(who, 1)
        except GatewayError:
            return False
        return True

    await until(slot_free)


@pytest.mark.parametrize(
    ("budget", "words"),
    [
        (Limits(tokens_per_day=100), "tokens per day"),
        (Limits(tokens_per_month=100), "tokens per month"),
    ],
)
async def test_token_budgets(make_limiter: MakeLimiter, budget: Limits, words: str) -> None:
    limiter = await make_limiter()
    who = principal(budget)
    reservation = await limiter.reserve(who, 90)
    error = await refused(limiter, who, 20)
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert words in error.message and "renews at" in error.message
    assert int(error.headers["retry-after"]) > 0
    limiter.settle(reservation, 40)  # the unused 50 go back to the budget

    async def fits() -> bool:
        try:
            await limiter.reserve(who, 60)
        except GatewayError:
            return False
        return True

    await until(fits)
    await refused(limiter, who, 1)


async def test_key_and_tenant_limits_both_apply(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    tenant = Limits(requests_per_minute=3)
    narrow_key = principal(tenant, Limits(requests_per_minute=2), key_id="key_a")
    other_key = principal(tenant, key_id="key_b")
    for _ in range(2):
        await limiter.reserve(narrow_key, 1)
    assert "key 'key-key_a' (key_a)" in (await refused(limiter, narrow_key)).message
    await limiter.reserve(other_key, 1)
    assert "tenant 'tenant-ten_1'" in (await refused(limiter, other_key)).message


async def test_headers_report_the_tighter_scope(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    tenant = Limits(requests_per_minute=10, tokens_per_minute=1000)
    who = principal(tenant, Limits(requests_per_minute=5, tokens_per_minute=5000))
    headers = headers_of(await limiter.reserve(who, 100))
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
    assert headers["x-ratelimit-reset-tokens"].endswith("s")


async def test_overrides_defaults_then_tenant_then_key(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(Limits(requests_per_minute=4, tokens_per_minute=50))
    plain = principal(tenant_id="ten_plain")
    own = principal(Limits(requests_per_minute=2), tenant_id="ten_own")
    keyed = principal(
        Limits(requests_per_minute=2), Limits(requests_per_minute=1), tenant_id="ten_k"
    )
    assert headers_of(await limiter.reserve(plain, 1))["x-ratelimit-limit-requests"] == "4"
    own_headers = headers_of(await limiter.reserve(own, 1))
    assert own_headers["x-ratelimit-limit-requests"] == "2"
    assert own_headers["x-ratelimit-limit-tokens"] == "50"  # default fills what the tenant left
    assert headers_of(await limiter.reserve(keyed, 1))["x-ratelimit-limit-requests"] == "1"
    await refused(limiter, keyed)


async def test_no_limits_means_no_headers(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    reservation = await limiter.reserve(principal(), 10**6)
    assert reservation.headers == []
    limiter.settle(reservation, 5)


async def test_a_refused_request_charges_nothing(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    who = principal(Limits(requests_per_minute=5, tokens_per_day=100))
    await limiter.reserve(who, 100)
    for _ in range(3):
        await refused(limiter, who, 1)  # refused by the budget, after passing requests/min
    headers = headers_of(await limiter.reserve(principal(Limits(requests_per_minute=5)), 0))
    assert headers["x-ratelimit-remaining-requests"] == "3"


async def test_settle_twice_counts_once(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    who = principal(Limits(tokens_per_day=100))
    reservation = await limiter.reserve(who, 50)
    limiter.settle(reservation, 0)
    limiter.settle(reservation, 0)

    async def released() -> bool:
        try:
            await limiter.reserve(who, 100)
        except GatewayError:
            return False
        return True

    await until(released)
    await refused(limiter, who, 1)
