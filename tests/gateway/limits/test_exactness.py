"""Three real gateway processes on one Redis, more demand than a key's limit: the admissions in
the window are at most the limit (zero over-admission) and at least 99% of it.

Needs the limiter wired into the pipeline; before that no request is ever refused and the test
fails saying so.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fixtures.gateway import Gateway, limited_key
from tests.gateway.limits.conftest import GATEWAYS

pytestmark = pytest.mark.limits_e2e
LIMIT = 120  # requests per minute for the key
DEMAND = 2 * LIMIT  # all sent within a few seconds, so within one sliding minute
CONCURRENCY = 24
CHAT = {"model": "base", "messages": [{"role": "user", "content": "count"}], "max_tokens": 4}


async def send_all(gateways: list[Gateway], key: str, count: int) -> list[httpx.Response]:
    """`count` chat requests spread round-robin over the gateways, `CONCURRENCY` at a time."""
    headers = {"authorization": f"Bearer {key}"}
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        async def one(index: int) -> httpx.Response:
            async with gate:
                url = gateways[index % len(gateways)].url + "/v1/chat/completions"
                return await client.post(url, json=CHAT, headers=headers)

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_requests_per_minute_exact_across_three_gateways(gateways_on_redis: list[Gateway]) -> None:
    key = limited_key(gateways_on_redis[0], {"requests_per_minute": LIMIT})
    responses = asyncio.run(send_all(gateways_on_redis, key, DEMAND))
    statuses = [response.status_code for response in responses]
    admitted, refused = statuses.count(200), statuses.count(429)
    print(f"{admitted} admitted, {refused} refused, limit {LIMIT}, {GATEWAYS} gateways")
    assert refused > 0, (
        f"no request was refused ({admitted} of {DEMAND} admitted for a limit of {LIMIT} "
        "per minute): the limiter is not wired into the pipeline"
    )
    assert admitted + refused == DEMAND, f"unexpected statuses: {set(statuses)}"
    assert admitted <= LIMIT, f"over-admission: {admitted} admitted, limit {LIMIT}"
    assert admitted >= 0.99 * LIMIT, f"under-admission: {admitted} admitted, limit {LIMIT}"

    ok = next(response for response in responses if response.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == str(LIMIT)
    assert int(ok.headers["x-ratelimit-remaining-requests"]) < LIMIT
    refusal = next(response for response in responses if response.status_code == 429)
    error = refusal.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "requests per minute" in error["message"]
    assert 1 <= int(refusal.headers["retry-after"]) <= 60
    assert refusal.headers["x-ratelimit-remaining-requests"] == "0"
