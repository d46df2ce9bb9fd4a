"""The chaos suite: real processes (gateway, stand-in or vLLM, redis-server) broken on purpose
while clients keep calling, each scenario measuring what the clients saw.

    .venv/bin/python -m pytest tests/chaos -q            # everything (about 3 minutes)
    .venv/bin/python -m pytest tests/chaos -m "not vllm"  # without the real vLLM
    CHAOS_REPORT=chaos.json .venv/bin/python -m pytest tests/chaos -s

Scenarios, one module each: Redis frozen, or killed and restarted from its AOF
(test_redis_outage); the gateway stopped by SIGTERM and by kill -9 (test_gateway_restart);
the stand-in killed or frozen mid-stream (test_upstream_faults) and a real vLLM killed
mid-stream (test_upstream_faults_real_vllm, marker `vllm`); clients hanging up by the
thousand (test_disconnect_storm); hostile inference and admin bodies (test_hostile_bodies);
a flood of made-up keys (test_invalid_key_flood).

Every process is started by the test and signalled by its PID; Redis is a redis-server of the
test's own on a free loopback port. `chaos_report` keeps every scenario's figures: see
tests/chaos/report.py for where they go.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.report import REPORT_ENV_VAR, ChaosReport
from tests.fixtures.redis import OwnRedis


@pytest.fixture(scope="session")
def chaos_report() -> Iterator[ChaosReport]:
    report = ChaosReport()
    yield report
    path = os.environ.get(REPORT_ENV_VAR)
    if path:
        report.write(Path(path))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A started redis-server of the test's own (AOF on), stopped after the test."""
    with OwnRedis(tmp_path, append_only=True) as server:
        yield server
