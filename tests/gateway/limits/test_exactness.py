"""Three real gateway processes on one Redis (one server, Sentinel, Cluster), more demand than a
key's limit: the admissions in the window are at most the limit (zero over-admission) and at
least 99% of it. And a key revoked through one of them is refused by every one within a
second, though each has it cached for a minute: the invalidation reached them.

Needs the limiter wired into the pipeline; before that no request is ever refused and the test
fails saying so.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fixtures.gateway import Gateway, limited_key, send_round_robin
from tests.gateway.limits.conftest import GATEWAYS
from tests.gateway.tenancy.test_auth import chat, new_key, wait_for_status

pytestmark = pytest.mark.limits_e2e
LIMIT = 120  # requests per minute for the key
DEMAND = 2 * LIMIT  # all sent within a few seconds, so within one sliding minute
CONCURRENCY = 24


def test_requests_per_minute_exact_across_three_gateways(
    gateways_on_every_topology: list[Gateway],
) -> None:
    gateways = gateways_on_every_topology
    key = limited_key(gateways[0], {"requests_per_minute": LIMIT})
    responses = asyncio.run(send_round_robin(gateways, key, DEMAND, CONCURRENCY))
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


def test_a_revoked_key_is_refused_by_every_instance_within_a_second(
    gateways_on_every_topology: list[Gateway],
) -> None:
    first, *others = gateways_on_every_topology
    key_id, key = new_key(first, first.tenant_id)
    for gateway in others:
        assert chat(gateway, key).status_code == 200  # cached there now, for a minute
    first.admin("POST", f"/keys/{key_id}/revoke").raise_for_status()
    revoked_at, seen_after = time.monotonic(), []
    for gateway in others:
        wait_for_status(gateway, key, 401, timeout=3)
        seen_after.append(time.monotonic() - revoked_at)
    print(f"revocation seen by the others after {[round(s * 1000) for s in seen_after]} ms")
    assert max(seen_after) < 1.0
