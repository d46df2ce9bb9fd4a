"""The Prometheus config and alert rules, checked and unit-tested by promtool (offline)."""

from __future__ import annotations

import subprocess

from tests.fixtures.processes import REPO_ROOT
from tests.fixtures.prometheus import prometheus_tool

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    result = subprocess.run(
        [prometheus_tool("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_compose_config_is_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_the_alert_rules_are_valid() -> None:
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", "alerts.yml")


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
