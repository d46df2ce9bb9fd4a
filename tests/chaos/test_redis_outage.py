"""Redis frozen (SIGSTOP) or killed and restarted from its AOF while clients keep calling a
gateway whose keys, limits and ledger live in that Redis.

Expected: no 500 anywhere; keys the gateway has cached keep working (served stale past their
TTL); keys it never saw get 503 `store_unavailable` with Retry-After in the OpenAI format,
never 401; the admin API answers 503 naming the store; the gateway logs about the outage in
a bounded number of lines, not a traceback per request; once Redis answers again, every
request is served within a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.chaos.expectations import Expectations
from tests.chaos.gateways import gateway_on_redis, log_lines_since, log_size
from tests.chaos.load import (
    Outcome,
    Phases,
    Request,
    bearer,
    chat_body,
    chat_request,
    client_session,
    closed_loops,
    counts_by_phase,
    longest_s,
    send,
)
from tests.chaos.report import ChaosReport
from tests.fixtures.gateway import ADMIN_KEY, Gateway, limited_key
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis import OwnRedis, RedisState, redis_state

STORE_TIMEOUT_S = 0.5
# Every store call is bounded by the store's timeout (plus one retry), the limiter's by its
# own 50 ms: ten store timeouts is far more than any request should wait.
LONGEST_REQUEST_BOUND_S = 10 * STORE_TIMEOUT_S
CACHED_CLIENTS = 8
UNSEEN_KEYS = 4
MAX_OUTAGE_LOG_LINES = 50
WARM_UP_S = 2.0
OUTAGE_S = 6.0
# Once Redis answers: the limiter retries it after limits.redis_retry_interval_s (1 s) and
# the invalidation listener reconnects within 0.5 s; 3 s covers both.
RECOVERY_S = 3.0
AFTER_S = 3.0
MAX_PER_CLIENT = 1000
MAX_LOAD_S = 60.0
# Filler keys, loaded 50 µs apart on restart: a couple of seconds of -LOADING answers.
FILLER_KEYS = 20_000
SLOW_LOADING = ("--key-load-delay", "50", "--loading-process-events-interval-bytes", "1024")


@pytest.fixture
def redis_gateway(standin: ServerProcess, own_redis: OwnRedis, tmp_path: Path) -> Iterator[Gateway]:
    # key_cache_ttl_s 1 (start_gateway's): cached keys expire during the outage
    gateway = gateway_on_redis(
        standin.url, own_redis.url, tmp_path, store__redis_timeout_s=str(STORE_TIMEOUT_S)
    )
    yield gateway
    gateway.stop()


def inference(
    session: aiohttp.ClientSession, gateway: Gateway, phases: Phases, kind: str, secret: str
) -> Request:
    return chat_request(session, kind, phases, gateway.url, secret, chat_body())


def admin_read(session: aiohttp.ClientSession, gateway: Gateway, phases: Phases) -> Request:
    url = f"{gateway.url}/admin/v1/tenants/{gateway.tenant_id}"
    return lambda: send(session, "admin", phases, "GET", url, headers=bearer(ADMIN_KEY))


def unseen_keys(gateway: Gateway) -> list[str]:
    """Keys created now and never used: no gateway has them cached."""
    return [limited_key(gateway, {"requests_per_minute": 1_000_000}) for _ in range(UNSEEN_KEYS)]


@dataclass(frozen=True, slots=True)
class UnderLoad:
    """What the clients saw of an outage, and what the gateway logged about it."""

    outcomes: list[Outcome]
    phases: Phases
    log_lines: list[str]  # from the end of the warm-up to the end of "recovering"

    def figures(self) -> dict[str, object]:
        """The figures both scenarios report."""
        return {
            "statuses_by_phase": counts_by_phase(self.outcomes),
            "http_500": sum(outcome.status == 500 for outcome in self.outcomes),
            "log_lines_during_outage": len(self.log_lines),
            "tracebacks_during_outage": sum(
                line.startswith("Traceback") for line in self.log_lines
            ),
            "first_log_lines": [line[:160] for line in self.log_lines[:3]],
        }


async def outage_under_load(
    gateway: Gateway, unseen: list[str], outage: Callable[[Phases], Awaitable[None]]
) -> UnderLoad:
    """Cached-key clients and an admin client call `gateway` in closed loops (phase "before");
    after the warm-up clients of the `unseen` keys join them, and `outage` breaks Redis and
    returns once it answers again (entering its own phases); then "recovering" and "after"."""
    outcomes: list[Outcome] = []
    phases = Phases("before")
    async with client_session() as session:
        steady = [inference(session, gateway, phases, "cached key", gateway.api_key)]
        steady = steady * CACHED_CLIENTS + [admin_read(session, gateway, phases)]
        later = [inference(session, gateway, phases, "unseen key", key) for key in unseen]
        async with closed_loops(steady, outcomes, max_per_client=MAX_PER_CLIENT, max_s=MAX_LOAD_S):
            await asyncio.sleep(WARM_UP_S)
            offset = log_size(gateway)
            async with closed_loops(
                later, outcomes, max_per_client=MAX_PER_CLIENT, max_s=MAX_LOAD_S
            ):
                await outage(phases)
                phases.enter("recovering")
                await asyncio.sleep(RECOVERY_S)
                lines = log_lines_since(gateway, offset)
                phases.enter("after")
                await asyncio.sleep(AFTER_S)
    return UnderLoad(outcomes, phases, lines)


def check_outage(expect: Expectations, seen: UnderLoad, during: list[Outcome]) -> None:
    """The expectations both scenarios share; `during` are the requests that started and
    ended while Redis was away (one that ends after Redis is back may well be served)."""
    outcomes = seen.outcomes
    of_kind = {
        kind: [outcome for outcome in during if outcome.kind == kind]
        for kind in ("cached key", "unseen key", "admin")
    }
    expect.that(all(of_kind.values()), "every kind of client sent requests during the outage")
    errors_500 = [outcome.label for outcome in outcomes if outcome.status == 500]
    expect.that(not errors_500, "no HTTP 500 in any phase", errors_500[:5])
    unauthorized = [f"{o.kind} in {o.phase}" for o in outcomes if o.status == 401]
    expect.that(not unauthorized, "no 401 for a valid key in any phase", unauthorized[:5])
    expect.that(
        all(outcome.status == 200 for outcome in of_kind["cached key"]),
        "cached keys served (stale) throughout the outage",
        sorted({outcome.label for outcome in of_kind["cached key"]}),
    )
    expect.that(
        all(
            outcome.status == 503
            and outcome.code == "store_unavailable"
            and outcome.openai_error
            and outcome.retry_after
            for outcome in of_kind["unseen key"]
        ),
        "unseen keys: 503 store_unavailable with Retry-After, OpenAI format",
        sorted({(outcome.label, outcome.retry_after) for outcome in of_kind["unseen key"]}),
    )
    expect.that(
        all(
            outcome.status == 503
            and outcome.code == "store_unavailable"
            and "store" in outcome.message
            for outcome in of_kind["admin"]
        ),
        "admin API: 503 store_unavailable naming the store",
        sorted({(outcome.label, outcome.message[:80]) for outcome in of_kind["admin"]}),
    )
    longest = longest_s(during)
    expect.that(
        longest < LONGEST_REQUEST_BOUND_S,
        f"no request during the outage took {LONGEST_REQUEST_BOUND_S} s or more",
        longest,
    )
    after = [outcome.label for outcome in outcomes if outcome.phase == "after"]
    expect.that(
        bool(after) and set(after) == {"200"},
        f"every request served once Redis had answered for {RECOVERY_S} s",
        sorted(set(after)),
    )
    expect.that(
        len(seen.log_lines) < MAX_OUTAGE_LOG_LINES,
        f"fewer than {MAX_OUTAGE_LOG_LINES} log lines about the outage",
        len(seen.log_lines),
    )


async def test_redis_frozen_under_load(
    own_redis: OwnRedis, redis_gateway: Gateway, chaos_report: ChaosReport
) -> None:
    unseen = unseen_keys(redis_gateway)  # before the warm-up: creating keys clears the key cache

    async def outage(phases: Phases) -> None:
        with own_redis.frozen():
            phases.enter("outage")
            await asyncio.sleep(OUTAGE_S)

    seen = await outage_under_load(redis_gateway, unseen, outage)
    during = seen.phases.within(seen.outcomes, "outage", "recovering")
    chaos_report.record(
        "1 redis SIGSTOP",
        outage_s=OUTAGE_S,
        longest_request_during_outage_s=longest_s(during),
        **seen.figures(),
    )
    expect = Expectations()
    check_outage(expect, seen, during)
    expect.verify()


async def test_redis_killed_and_restarted_from_its_aof(
    own_redis: OwnRedis, redis_gateway: Gateway, chaos_report: ChaosReport
) -> None:
    unseen = unseen_keys(redis_gateway)
    await asyncio.to_thread(own_redis.fill, FILLER_KEYS)  # the AOF now holds the keys too

    # When Redis was last seen not up: polls are 50 ms apart and, on a busy machine, later;
    # a request that ends between Redis being up and the poll that sees it may be served
    last_seen_loading = [0.0]

    async def outage(phases: Phases) -> None:
        own_redis.kill()
        phases.enter("down")
        await asyncio.sleep(OUTAGE_S / 2)
        last_seen_loading[0] = time.monotonic()  # not started yet: not up either
        own_redis.start(*SLOW_LOADING, wait_until_up=False)
        await asyncio.to_thread(own_redis.wait_for, 10.0, RedisState.LOADING, RedisState.UP)
        phases.enter("loading")
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            polled_at = time.monotonic()
            if await asyncio.to_thread(redis_state, own_redis.url) is RedisState.UP:
                return
            last_seen_loading[0] = polled_at  # it was still loading when this poll began
            await asyncio.sleep(0.05)
        raise AssertionError("Redis did not finish loading its AOF within 30 s")

    seen = await outage_under_load(redis_gateway, unseen, outage)
    outcomes, entered = seen.outcomes, seen.phases.entered
    away = [
        outcome
        for outcome in seen.phases.within(outcomes, "down", "recovering")
        if outcome.ended <= last_seen_loading[0]
    ]
    recovered = [
        outcome.started + outcome.elapsed_s - entered["recovering"]
        for outcome in outcomes
        if outcome.kind == "unseen key" and outcome.phase == "recovering" and outcome.status == 200
    ]
    chaos_report.record(
        "2 redis SIGKILL + AOF restart",
        down_s=OUTAGE_S / 2,
        loading_s=round(entered["recovering"] - entered["loading"], 2),
        longest_request_while_away_s=longest_s(away),
        unseen_key_first_200_after_loaded_s=round(min(recovered), 2) if recovered else None,
        **seen.figures(),
    )
    expect = Expectations()
    expect.that(
        any(outcome.phase == "loading" for outcome in outcomes),
        "requests were sent while Redis loaded its AOF",
    )
    check_outage(expect, seen, away)
    expect.verify()
