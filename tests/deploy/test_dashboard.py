"""The Grafana dashboard JSON: layout, provisioning, valid PromQL, and only metric names that
exist (the gateway's as defined in gateway/observability/metrics.py, vLLM's as it exports)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from deploy.tools.render_dashboard import expand
from gateway.observability import metrics
from tests.deploy.dashboard_queries import (
    DASHBOARD,
    alert_expressions,
    dashboard,
    metric_names,
    panel_targets,
)
from tests.fixtures.processes import REPO_ROOT
from tests.fixtures.prometheus import prometheus_tool

# What vLLM exports (docs/notes: vllm-cpu.md), with the names older releases used.
VLLM_METRICS = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:lora_requests_info",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:inter_token_latency_seconds_bucket",
    "vllm:time_per_output_token_seconds_bucket",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
PANEL_TITLES = {
    "Requests/s by status",
    "Errors/s by status (non-2xx)",
    "Request latency",
    "Time to first token (gateway)",
    "Tokens/s by tenant",
    "Rate-limit rejections/s",
    "Safety actions/s",
    "vLLM requests running / waiting",
    "vLLM KV-cache usage",
    "vLLM time to first token",
    "vLLM inter-token latency",
    "LoRA adapters running",
}


def gateway_metric_names() -> set[str]:
    assert metrics.PREFIX == "vllm_gateway_"
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith(metrics.PREFIX)
        for suffix in SUFFIXES[family.type]
    }


def test_panels_tile_the_24_column_grid_without_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    ids = set()
    for panel in dashboard()["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"])
                 for y in range(box["y"], box["y"] + box["h"])}  # fmt: skip
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        assert panel["id"] not in ids
        ids.add(panel["id"])


def test_the_required_panels_are_there() -> None:
    titles = {panel["title"] for panel in dashboard()["panels"]}
    assert titles >= PANEL_TITLES


def test_every_query_uses_the_provisioned_data_source() -> None:
    datasources = REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
    [source] = yaml.safe_load(datasources.read_text())["datasources"]
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == source["uid"]
    for panel, target in panel_targets():
        assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    provider = REPO_ROOT / "deploy/grafana/provisioning/dashboards/vllm-gateway.yml"
    [dashboards] = yaml.safe_load(provider.read_text())["providers"]
    assert dashboards["options"]["path"] == "/var/lib/grafana/dashboards"  # compose mounts here


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule: a typo fails here, not in Grafana."""
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expand(target["expr"], "1m")}
        for index, (_, target) in enumerate(panel_targets())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [prometheus_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_and_alerts_read_only_metrics_that_exist() -> None:
    known = gateway_metric_names() | VLLM_METRICS
    expressions = [target["expr"] for _, target in panel_targets()] + alert_expressions()
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert used - known == set()
    gateway_used = {name for name in used if name.startswith(metrics.PREFIX)}
    assert len(gateway_used) >= 12, "the gateway panels read the gateway's metrics"


def test_the_dashboard_file_is_the_one_grafana_loads() -> None:
    assert DASHBOARD.parent == REPO_ROOT / "deploy/grafana/dashboards"
    assert dashboard()["uid"] == "vllm-gateway"
