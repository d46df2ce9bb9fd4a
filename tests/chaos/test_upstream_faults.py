"""The stand-in killed (SIGKILL) or frozen (SIGSTOP) while streams and whole requests are in
flight, then back: streams end with an error event, whole requests get 502/503/504, never a
500 and never a hang past the configured timeouts; /readyz says 503 while it is away and 200
again only once requests are routed to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.chaos.expectations import Expectations
from tests.chaos.load import Outcome, Phases, client_session, counts_by_phase
from tests.chaos.report import ChaosReport
from tests.chaos.signals import frozen
from tests.chaos.upstream import (
    UPSTREAM_ERRORS,
    InFlight,
    check_broken_requests,
    check_no_500,
    check_routed_once_ready,
    gateway_with_timeouts,
    in_flight,
    kill_mid_flight,
    one_by_one,
    wait_for_readyz,
)
from tests.fixtures.gateway import Gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.replicas import standin_at
from tests.fixtures.standin import set_faults, start_standin

FIRST_BYTE_TIMEOUT_S = 3.0
STREAM_IDLE_TIMEOUT_S = 3.0
# A request in flight ends at once when the stand-in dies, and at the latest one timeout
# after it froze; one second more for the machine's two busy cores.
BREAK_BOUND_S = max(FIRST_BYTE_TIMEOUT_S, STREAM_IDLE_TIMEOUT_S) + 1.0
ITL_MS = 50
IN_FLIGHT = InFlight(
    streams=8,
    stream_tokens=200,  # 10 s each: still streaming when the stand-in breaks
    wholes=4,
    whole_tokens=40,  # 2 s each: within the first-byte timeout unless it breaks
    break_after_s=1.0,
)
REQUESTS_WHILE_AWAY = 4
REQUESTS_ONCE_READY = 8


@pytest.fixture
def own_standin(tmp_path: Path) -> Iterator[ServerProcess]:
    """A stand-in of the test's own, which it may kill or freeze."""
    server = start_standin(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def fault_gateway(own_standin: ServerProcess, tmp_path: Path) -> Iterator[Gateway]:
    with gateway_with_timeouts(
        own_standin.url, tmp_path, FIRST_BYTE_TIMEOUT_S, STREAM_IDLE_TIMEOUT_S
    ) as gateway:
        yield gateway


async def test_standin_killed_mid_stream(
    own_standin: ServerProcess, fault_gateway: Gateway, tmp_path: Path, chaos_report: ChaosReport
) -> None:
    gateway = fault_gateway
    set_faults(own_standin, itl_ms=ITL_MS)
    phases = Phases("in flight")
    port = urlsplit(own_standin.url).port
    assert port is not None
    async with client_session() as session:
        killed = await kill_mid_flight(
            session, gateway, phases, own_standin.process, IN_FLIGHT, REQUESTS_WHILE_AWAY
        )
        restarted = standin_at(port, tmp_path)
        try:
            readyz_200_after_s = await wait_for_readyz(session, gateway, 200)
            phases.enter("ready again")
            once_ready = await one_by_one(session, gateway, phases, "whole", REQUESTS_ONCE_READY)
        finally:
            restarted.stop()

    chaos_report.record(
        "4a stand-in SIGKILL mid-stream",
        statuses_by_phase=counts_by_phase(killed.broken + killed.while_down + once_ready),
        **killed.figures(),
        readyz_200_after_restart_s=readyz_200_after_s,
    )
    expect = Expectations()
    killed.check(expect, BREAK_BOUND_S, "the stand-in")
    check_routed_once_ready(expect, once_ready)
    expect.verify()


async def test_standin_frozen_mid_stream(
    own_standin: ServerProcess, fault_gateway: Gateway, chaos_report: ChaosReport
) -> None:
    gateway = fault_gateway
    set_faults(own_standin, itl_ms=ITL_MS)
    phases = Phases("in flight")
    async with client_session() as session:
        tasks = await in_flight(session, gateway, phases, IN_FLIGHT)
        with frozen(own_standin.process):
            frozen_at = time.monotonic()
            broken: list[Outcome] = list(await asyncio.gather(*tasks))
            phases.enter("frozen")
            readyz_503_after_s = await wait_for_readyz(session, gateway, 503)
            while_frozen = await one_by_one(session, gateway, phases, "whole", REQUESTS_WHILE_AWAY)
        readyz_200_after_s = await wait_for_readyz(session, gateway, 200)
        phases.enter("ready again")
        once_ready = await one_by_one(session, gateway, phases, "whole", REQUESTS_ONCE_READY)

    chaos_report.record(
        "4b stand-in SIGSTOP mid-stream",
        statuses_by_phase=counts_by_phase(broken + while_frozen + once_ready),
        last_broken_request_ended_after_stop_s=round(max(o.ended for o in broken) - frozen_at, 2),
        longest_request_while_frozen_s=round(max(o.elapsed_s for o in while_frozen), 2),
        readyz_503_after_s=readyz_503_after_s,
        readyz_200_after_sigcont_s=readyz_200_after_s,
    )
    expect = Expectations()
    check_broken_requests(expect, broken, frozen_at, BREAK_BOUND_S)
    expect.that(
        all(
            outcome.status in UPSTREAM_ERRORS and outcome.elapsed_s < BREAK_BOUND_S
            for outcome in while_frozen
        ),
        f"requests while the stand-in is frozen get 502/503/504 within {BREAK_BOUND_S} s",
        sorted({(outcome.label, round(outcome.elapsed_s, 1)) for outcome in while_frozen}),
    )
    check_no_500(expect, while_frozen)
    check_routed_once_ready(expect, once_ready)
    expect.verify()
