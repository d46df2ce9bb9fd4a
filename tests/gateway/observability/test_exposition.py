"""How metrics are served: route selection, the admin key, multiprocess mode, the own port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.core.asgi import Message
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.observability import metrics
from gateway.observability.exposition import (
    MULTIPROC_ENV,
    AdminKeyMetrics,
    metrics_endpoint,
    metrics_handler,
    metrics_process,
)
from gateway.settings import Settings
from tests.fixtures.metrics import metric_value
from tests.fixtures.processes import REPO_ROOT, free_port

WORKER = """
import sys
from gateway.core.context import RequestContext
from gateway.observability import metrics
for _ in range(int(sys.argv[1])):
    ctx = RequestContext("r")
    ctx.tenant_name, ctx.public_model, ctx.status = "acme", "base", 200
    ctx.usage = {"prompt_tokens": 2, "completion_tokens": 5}
    metrics.observe_request(ctx, 0.2)
metrics.upstream_started("http://vllm:8000")
"""


def settings(**observability: object) -> Settings:
    return Settings(observability=observability, admin={"keys": ["admin-key-123"]})


def test_the_route_follows_the_settings() -> None:
    assert metrics_handler(settings()) is metrics_endpoint
    assert metrics_handler(settings(metrics_enabled=False)) is None
    assert metrics_handler(settings(metrics_port=9464)) is None  # served by the CLI's process
    guarded = metrics_handler(settings(metrics_require_admin_key=True))
    assert guarded is not None and guarded is not metrics_endpoint


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


async def test_the_admin_key_guards_the_page() -> None:
    guarded = AdminKeyMetrics(["admin-key-123"]).handle
    for authorization in (None, b"Bearer wrong", b"Basic admin-key-123"):
        headers = [(b"authorization", authorization)] if authorization else []
        with pytest.raises(GatewayError) as refused:
            await guarded(RequestContext("r"), {"headers": headers}, Recorder(), Recorder())
        assert refused.value.status == 401
    metrics.key_cache_lookup(hit=True)
    send = Recorder()
    scope = {"headers": [(b"authorization", b"Bearer admin-key-123")]}
    await guarded(RequestContext("r"), scope, Recorder(), send)
    assert send.messages[0]["status"] == 200
    assert b'vllm_gateway_key_cache_lookups_total{result="hit"}' in send.messages[1]["body"]


def run_worker(count: int, directory: Path) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(directory)}
    subprocess.run([sys.executable, "-c", WORKER, str(count)], env=env, cwd=REPO_ROOT, check=True)


def test_several_processes_are_merged_and_served_on_the_own_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"stale samples of a previous run")
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    port = free_port()
    with metrics_process(settings(metrics_port=port)):
        assert not (directory / "counter_12345.db").exists()
        run_worker(3, directory)
        run_worker(4, directory)
        url = f"http://127.0.0.1:{port}"
        labels = {"tenant": "acme", "model": "base", "status": "200"}
        assert metric_value(url, "vllm_gateway_requests_total", **labels) == 7
        completion = metric_value(
            url, "vllm_gateway_completion_tokens_total", tenant="acme", model="base"
        )
        assert completion == 35
        assert metric_value(url, "vllm_gateway_request_duration_seconds_count", model="base") == 7
        # the workers have exited without a word: their requests in flight no longer count
        assert metric_value(url, "vllm_gateway_upstream_in_flight") == 0
        assert not list(directory.glob("gauge_live*"))
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/metrics", timeout=2)


def test_several_workers_get_a_directory_that_is_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with metrics_process(Settings(server={"workers": 2})):
        directory = Path(os.environ[MULTIPROC_ENV])
        assert directory.is_dir()
    assert MULTIPROC_ENV not in os.environ
    assert not directory.exists()
    with metrics_process(Settings(server={"workers": 1})):
        assert MULTIPROC_ENV not in os.environ  # one process needs no files


BUSY_WORKER = """
import sys
from gateway.observability import metrics
metrics.upstream_started("http://vllm:8000")
print("started", flush=True)
sys.stdin.readline()
"""


def test_a_live_workers_requests_in_flight_count_until_it_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with metrics_process(settings(metrics_port=port)):
        worker = subprocess.Popen(
            [sys.executable, "-c", BUSY_WORKER],
            env={**os.environ, MULTIPROC_ENV: str(tmp_path)},
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert worker.stdout is not None and worker.stdout.readline() == b"started\n"
            assert metric_value(url, "vllm_gateway_upstream_in_flight") == 1
        finally:
            worker.kill()
            worker.wait()
        assert metric_value(url, "vllm_gateway_upstream_in_flight") == 0
