"""Postgres down for 10 s under load, with every durable store of the gateway in it.

The gateway (a real process) keeps tenants, keys, adapters, safety policies and the ledger in
a Postgres server of this module's own (tests/fixtures/postgres.py's OwnPostgres), which the
test stops (fast shutdown, by its PID) and starts again on the same port and data while a few
clients keep calling, streamed and whole. Expected: no request fails because of the store
(the keys are served from the authenticator's cache, the ledger keeps its records in its log
and retries), no 500 at all, and once Postgres is back every request the clients sent is in
the ledger exactly once, with the tokens the clients were shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.chaos.gateways import log_lines_since
from tests.chaos.load import Outcome, Phases, chat_body, chat_request, client_session, closed_loops
from tests.chaos.load import counts as label_counts
from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.postgres import OwnPostgres, create_database
from tests.fixtures.processes import ServerProcess

OUTAGE_S = 10.0
# What the gateway may log about the outage: a line per store when it goes and when it is
# back, the ledger's pair, the invalidation listeners' (keys, safety policies), uvicorn's own.
MAX_LOG_LINES = 30
WARM_UP_S = 2.0
AFTER_S = 3.0
PLAIN_CLIENTS = 3
STREAM_CLIENTS = 1
LEDGER_WAIT_S = 30.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    with OwnPostgres() as server:
        yield server


@pytest.fixture(scope="module")
def gateway_and_database(
    standin: ServerProcess, own_postgres: OwnPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    url = create_database(own_postgres.url)
    gateway = start_gateway(
        standin.url,
        tmp_path_factory.mktemp("postgres-outage-gateway"),
        store__postgres_url=url,
        store__call_budget_s="0.5",
        auth__key_hash_secret="postgres-outage-secret",
        auth__key_cache_ttl_s="0.5",
        usage__flush_interval_s="0.2",
    )
    yield gateway, url
    gateway.stop()


def ledger_totals(gateway: Gateway) -> dict[str, Any] | None:
    """The tenant's usage totals, or None while the usage store does not answer."""
    answer = gateway.admin("GET", "/usage", params={"tenant_id": gateway.tenant_id, "group_by": ""})
    return answer.json()["totals"] if answer.status_code == 200 else None


async def load_through_an_outage(gateway: Gateway, own_postgres: OwnPostgres) -> list[Outcome]:
    phases = Phases("before")
    outcomes: list[Outcome] = []
    async with client_session() as session:
        plain = chat_request(session, "plain", phases, gateway.url, gateway.api_key, chat_body())
        stream_body = chat_body(stream=True, include_usage=True)
        stream = chat_request(session, "stream", phases, gateway.url, gateway.api_key, stream_body)
        clients = [plain] * PLAIN_CLIENTS + [stream] * STREAM_CLIENTS
        async with closed_loops(clients, outcomes, max_per_client=10_000, max_s=60):
            await asyncio.sleep(WARM_UP_S)
            phases.enter("down")
            with own_postgres.down():
                await asyncio.sleep(OUTAGE_S)
            phases.enter("after")
            await asyncio.sleep(AFTER_S)
    return outcomes


def test_postgres_down_for_10_s_under_load_loses_and_fails_nothing(
    gateway_and_database: tuple[Gateway, str], own_postgres: OwnPostgres
) -> None:
    gateway, url = gateway_and_database
    assert httpx.get(gateway.url + "/readyz").status_code == 200
    outcomes = asyncio.run(load_through_an_outage(gateway, own_postgres))

    labels = label_counts(outcomes)
    during = [outcome for outcome in outcomes if outcome.phase == "down"]
    assert len(during) > 20, labels  # the clients kept going while Postgres was down
    assert labels == {"200": len(outcomes)}, labels  # no 500, no 503: nothing failed
    shown = [outcome.usage for outcome in outcomes]
    assert None not in shown

    # Every request is in the ledger once, with the tokens its client was shown.
    expected = {
        "requests": len(outcomes),
        "prompt_tokens": sum(usage[0] for usage in shown if usage),
        "completion_tokens": sum(usage[1] for usage in shown if usage),
        "errors": 0,
    }
    deadline = time.monotonic() + LEDGER_WAIT_S
    while (totals := ledger_totals(gateway)) is None or {
        name: totals[name] for name in expected
    } != expected:
        assert time.monotonic() < deadline, (totals, expected)
        time.sleep(0.2)
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM usage_records WHERE tenant_id = %s",
            (gateway.tenant_id,),
        ).fetchone()
    assert stored == (len(outcomes), len(outcomes))

    lines = log_lines_since(gateway, 0)
    assert any("usage ledger: cannot write to the store" in line for line in lines), lines
    assert len(lines) <= MAX_LOG_LINES, lines
    assert "Traceback" not in "\n".join(lines)
