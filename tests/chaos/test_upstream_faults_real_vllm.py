"""A real vLLM (CPU build, the tiny model) killed by PID mid-stream: streams end with an
error event, whole requests get 502/503/504, never a 500 or a hang, and /readyz says 503.

The vLLM is this test's own, not the session's shared one (tests/fixtures/real_vllm.py), as
it is killed; it serves the base model only.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.expectations import Expectations
from tests.chaos.load import Phases, client_session, counts_by_phase
from tests.chaos.procfs import descendants
from tests.chaos.report import ChaosReport
from tests.chaos.upstream import InFlight, gateway_with_timeouts, kill_mid_flight, one_by_one
from tests.fixtures.gateway import Gateway
from tests.fixtures.real_vllm import READY_TIMEOUT_S, tiny_model_config
from vllm_server.launcher import VllmServer, default_venv, venv_python

pytestmark = pytest.mark.vllm

FIRST_BYTE_TIMEOUT_S = 10.0
STREAM_IDLE_TIMEOUT_S = 10.0
BREAK_BOUND_S = max(FIRST_BYTE_TIMEOUT_S, STREAM_IDLE_TIMEOUT_S) + 1.0
TOKENS = 480  # several seconds each on 2 cores
IN_FLIGHT = InFlight(
    streams=4, stream_tokens=TOKENS, wholes=2, whole_tokens=TOKENS, break_after_s=0.5
)
REQUESTS_WHILE_DOWN = 4


@pytest.fixture
def own_vllm(tmp_path: Path) -> Iterator[VllmServer]:
    """A vLLM of the test's own; afterwards every process it started is gone."""
    config = tiny_model_config(venv_python(default_venv()))
    server = VllmServer.start(config, tmp_path / "vllm.log", READY_TIMEOUT_S)
    children = descendants(server.process.pid)
    yield server
    server.stop()
    for child in children:  # the engine processes, should killing the API server orphan them
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


@pytest.fixture
def vllm_gateway(own_vllm: VllmServer, tmp_path: Path) -> Iterator[Gateway]:
    with gateway_with_timeouts(
        own_vllm.url, tmp_path, FIRST_BYTE_TIMEOUT_S, STREAM_IDLE_TIMEOUT_S
    ) as gateway:
        yield gateway


async def test_real_vllm_killed_mid_stream(
    own_vllm: VllmServer, vllm_gateway: Gateway, chaos_report: ChaosReport
) -> None:
    gateway = vllm_gateway
    phases = Phases("warm-up")
    async with client_session() as session:
        warm_up = await one_by_one(session, gateway, phases, "whole", 1)
        assert [outcome.status for outcome in warm_up] == [200], warm_up
        phases.enter("in flight")
        killed = await kill_mid_flight(
            session, gateway, phases, own_vllm.process, IN_FLIGHT, REQUESTS_WHILE_DOWN
        )

    chaos_report.record(
        "4c real vLLM SIGKILL mid-stream",
        statuses_by_phase=counts_by_phase(killed.broken + killed.while_down),
        **killed.figures(),
    )
    expect = Expectations()
    killed.check(expect, BREAK_BOUND_S, "vLLM")
    expect.verify()
