"""The dashboard against real data: a real Prometheus scrapes a real gateway and the stand-in
while traffic flows, and every panel that this traffic concerns must show it."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx

from deploy.tools.render_dashboard import Prometheus, expand
from tests.deploy.dashboard_queries import panel_targets
from tests.fixtures.gateway import Gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.prometheus import start_prometheus

# Panels about features this traffic does not exercise (limits, safety, Redis, upstream
# failures) or metrics the stand-in does not export (inter-token latency) may stay empty.
MAY_BE_EMPTY = {
    "Rate-limit rejections/s",
    "Safety actions/s",
    "Upstream errors/s by replica",
    "Redis errors and fail-open/s",
    "vLLM inter-token latency",
}
SCRAPE_INTERVAL_S = 0.5


def send_traffic(gateway: Gateway) -> None:
    for index in range(8):
        body = {
            "model": ("base", "tenant-a", "tenant-b")[index % 3],
            "messages": [{"role": "user", "content": f"question {index}"}],
            "max_tokens": 8,
            "stream": index % 2 == 0,
        }
        response = httpx.post(
            gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers, timeout=30
        )
        assert response.status_code == 200
    unknown = {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=unknown, headers=gateway.headers
    )
    assert response.status_code == 404


def empty_panels(prometheus: Prometheus, since: float) -> set[str]:
    """Titles of panels none of whose queries has a value since `since`."""
    showing, titles = set(), set()
    now = time.time()
    for panel, target in panel_targets():
        titles.add(panel["title"])
        query = expand(target["expr"], f"{int(SCRAPE_INTERVAL_S * 10 * 1000)}ms")
        for series in prometheus.range(query, since, now, 1):
            if any(not math.isnan(float(value)) for _, value in series["values"]):
                showing.add(panel["title"])
    return titles - showing


def test_every_panel_about_this_traffic_shows_it(
    gateway: Gateway, standin: ServerProcess, tmp_path: Path
) -> None:
    targets = {
        "vllm-gateway": [gateway.url.removeprefix("http://")],
        "vllm": [standin.url.removeprefix("http://")],
    }
    server = start_prometheus(targets, tmp_path, SCRAPE_INTERVAL_S)
    try:
        prometheus = Prometheus(server.url)
        started = time.time()
        # rate() needs a series to grow between two scrapes: the first round creates the
        # series (a new series' first sample is its starting point), the second grows them
        for _ in range(2):
            send_traffic(gateway)
            time.sleep(3 * SCRAPE_INTERVAL_S)
        deadline = time.monotonic() + 30
        while (empty := empty_panels(prometheus, started) - MAY_BE_EMPTY) and (
            time.monotonic() < deadline
        ):
            time.sleep(1)
        assert empty == set(), "panels without data (is the gateway's observability wired?)"
    finally:
        server.stop()
