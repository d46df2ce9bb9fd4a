"""A Redis primary killed (SIGKILL) under load, and its replica promoted: on a Redis Cluster
(3 primaries, 3 replicas, cluster-node-timeout 1 s) and under Sentinel (a primary, a replica,
3 sentinels, down-after 1 s). 8 clients call two gateways sharing that Redis, 4 each: one
with `limits.failure_policy` open, one closed. The primary killed is the one that serves the
clients' tenant's limits.

Expected: no 500 anywhere; the open gateway serves every request throughout (its local
limiter meanwhile); the closed one answers 503 `rate_limiter_unavailable` (OpenAI format,
Retry-After) until Redis answers again, never anything else; no request takes long; once the
replica is promoted, every request is served again, and the limits are exact: of twice a new
key's limit, exactly the limit is admitted.

Measured besides: how long the promotion took, and what Redis's asynchronous replication
lost. A probe writes INCR to a key in the tenant's slot on the primary, as fast as it
answers, until it is killed; the promoted replica's value, against the last one the primary
acknowledged, is how many acknowledged writes the failover lost. (The limiter's scripts
replicate the same way: that many admissions of the last moment may be forgotten, and
admitted again, once.)
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.redis_client import keyspace, parse_redis_url
from tests.chaos.expectations import Expectations
from tests.chaos.gateways import gateway_on_redis, log_lines_since
from tests.chaos.load import (
    Outcome,
    Phases,
    chat_body,
    chat_request,
    client_session,
    closed_loops,
    counts_by_phase,
    longest_s,
)
from tests.chaos.report import ChaosReport
from tests.fixtures.gateway import Gateway, limited_key, send_round_robin
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis_topologies import OwnCluster, OwnSentinel, wait_until

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout, and Sentinel's down-after-milliseconds
CLIENTS_PER_GATEWAY = 4
WARM_UP_S = 2.0
PROMOTION_TIMEOUT_S = 30.0
# After the promotion: the limiter tries Redis again after limits.redis_retry_interval_s (1 s)
# and finds the new primary on its first failed call; 3 s covers both.
RECOVERY_S = 3.0
AFTER_S = 2.0
LONGEST_REQUEST_BOUND_S = 5.0
MAX_PER_CLIENT = 2000
MAX_LOAD_S = 90.0
EXACT_LIMIT = 60
PROBE_PAUSE_S = 0.0005

Deployment = OwnCluster | OwnSentinel


@pytest.fixture(params=["redis-cluster", "redis-sentinel"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    own: Deployment
    if request.param == "redis-cluster":
        own = OwnCluster(tmp_path / "cluster", node_timeout_ms=NODE_TIMEOUT_MS)
    else:
        own = OwnSentinel(tmp_path / "sentinel", down_after_ms=NODE_TIMEOUT_MS)
    with own:
        yield own


@dataclass(frozen=True, slots=True)
class TwoGateways:
    prefix: str
    open: Gateway
    closed: Gateway


@pytest.fixture
def gateways(
    standin: ServerProcess, deployment: Deployment, tmp_path: Path
) -> Iterator[TwoGateways]:
    prefix = f"chaos-{uuid.uuid4().hex[:8]}:"
    # Redis answers within the limiter's timeout on 2 busy cores: no fallback before the kill
    shared = {"limits__redis_timeout_s": "0.5"}
    started = [
        gateway_on_redis(
            standin.url, deployment.url, tmp_path, prefix, limits__failure_policy="open", **shared
        )
    ]
    try:
        started.append(
            gateway_on_redis(
                standin.url,
                deployment.url,
                tmp_path,
                prefix,
                tenant="acme-closed",
                limits__failure_policy="closed",
                **shared,
            )
        )
        yield TwoGateways(prefix, *started)
    finally:
        for gateway in started:
            gateway.stop()


def failures_logged(gateways: TwoGateways) -> list[str]:
    """The last line of each traceback the gateways logged: what a 500 was."""
    lines = log_lines_since(gateways.open, 0) + log_lines_since(gateways.closed, 0)
    return [
        after
        for before, after in itertools.pairwise(lines)
        if after[:1] not in " T" and before.startswith("    ")
    ]


@dataclass
class Probe:
    """INCR on one key of the primary, one after the other, until the primary is gone."""

    port: int
    key: str
    acknowledged: int = 0
    sent: int = 0

    async def run(self) -> None:
        async with aioredis.Redis(port=self.port, socket_timeout=1.0) as client:
            try:
                while True:
                    self.sent += 1
                    self.acknowledged = await client.incr(self.key)
                    await asyncio.sleep(PROBE_PAUSE_S)
            except (RedisError, OSError):
                return


async def test_primary_killed_under_load_and_its_replica_promoted(
    deployment: Deployment, gateways: TwoGateways, chaos_report: ChaosReport
) -> None:
    address = parse_redis_url(deployment.url)
    tenant = gateways.open.tenant_id
    limits_keyspace = keyspace(address, gateways.prefix + "rl:", tenant)
    port = deployment.primary_port(limits_keyspace)
    probe = Probe(port, limits_keyspace + "failover-probe")
    outcomes: list[Outcome] = []
    phases = Phases("before")
    async with client_session() as session:
        requests = [
            chat_request(session, kind, phases, gateway.url, gateways.open.api_key, chat_body())
            for kind, gateway in (("open", gateways.open), ("closed", gateways.closed))
            for _ in range(CLIENTS_PER_GATEWAY)
        ]
        async with closed_loops(
            requests, outcomes, max_per_client=MAX_PER_CLIENT, max_s=MAX_LOAD_S
        ):
            probing = asyncio.create_task(probe.run())
            await asyncio.sleep(WARM_UP_S)
            deployment.kill_port(port)
            phases.enter("failover")
            await probing
            await asyncio.to_thread(
                wait_until,
                "the replica to be promoted",
                lambda: deployment.failed_over(limits_keyspace, port),
                PROMOTION_TIMEOUT_S,
                deployment.servers,
            )
            phases.enter("recovering")
            await asyncio.sleep(RECOVERY_S)
            phases.enter("after")
            await asyncio.sleep(AFTER_S)
            phases.enter("done")
    promoted_port = deployment.primary_port(limits_keyspace)
    async with aioredis.Redis(port=promoted_port, socket_timeout=5.0) as client:
        survived = int(await client.get(probe.key) or 0)
    exact_key = limited_key(gateways.open, {"requests_per_minute": EXACT_LIMIT})
    exact = await send_round_robin(
        [gateways.open, gateways.closed], exact_key, 2 * EXACT_LIMIT, 2 * CLIENTS_PER_GATEWAY
    )
    admitted = sum(response.status_code == 200 for response in exact)

    entered = phases.entered
    failover = phases.within(outcomes, "failover", "recovering")
    closed_served_again = [
        outcome.ended - entered["failover"]
        for outcome in outcomes
        if outcome.kind == "closed" and outcome.status == 200 and outcome.phase != "before"
    ]
    chaos_report.record(
        f"redis failover ({type(deployment).__name__})",
        promotion_s=round(entered["recovering"] - entered["failover"], 2),
        closed_served_again_after_s=round(min(closed_served_again, default=-1.0), 2),
        longest_request_during_failover_s=longest_s(failover),
        longest_request_s=longest_s(outcomes),
        statuses_by_phase=counts_by_phase(outcomes),
        http_500=sum(outcome.status == 500 for outcome in outcomes),
        probe_writes_acknowledged=probe.acknowledged,
        probe_writes_lost=probe.acknowledged - survived,
        probe_rate_per_s=round(probe.sent / (entered["failover"] - entered["before"])),
        exact_after=f"{admitted} of {2 * EXACT_LIMIT} admitted, limit {EXACT_LIMIT}",
    )

    expect = Expectations()
    expect.that(bool(failover), "requests were sent during the failover")
    errors_500 = [outcome.label for outcome in outcomes if outcome.status == 500]
    expect.that(
        not errors_500, "no HTTP 500 in any phase", errors_500[:5] + failures_logged(gateways)
    )
    open_labels = {outcome.label for outcome in outcomes if outcome.kind == "open"}
    expect.that(open_labels == {"200"}, "failure_policy open: every request served", open_labels)
    closed_failures = {
        (outcome.label, outcome.openai_error, bool(outcome.retry_after))
        for outcome in outcomes
        if outcome.kind == "closed" and outcome.status != 200
    }
    expect.that(
        closed_failures <= {("503 rate_limiter_unavailable", True, True)},
        "failure_policy closed: 503 rate_limiter_unavailable with Retry-After, or served",
        closed_failures,
    )
    expect.that(
        longest_s(outcomes) < LONGEST_REQUEST_BOUND_S,
        f"no request took {LONGEST_REQUEST_BOUND_S} s or more",
        longest_s(outcomes),
    )
    # requests that started and ended wholly before the kill, or after the recovery
    calm = phases.within(outcomes, "before", "failover") + phases.within(outcomes, "after", "done")
    expect.that(
        {outcome.label for outcome in calm} == {"200"},
        f"every request served before the kill and {RECOVERY_S} s after the promotion",
        {outcome.label for outcome in calm},
    )
    expect.that(
        admitted == EXACT_LIMIT,
        f"after the failover, exactly {EXACT_LIMIT} of {2 * EXACT_LIMIT} admitted",
        admitted,
    )
    expect.verify()
