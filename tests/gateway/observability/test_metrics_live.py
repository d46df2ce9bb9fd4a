"""Metrics and the access log after real traffic through a real gateway in front of the stand-in.

Values are asserted as differences around the traffic each test sends, since the gateway is
shared by the module's tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.fixtures.gateway import ADMIN_KEY, Gateway, start_gateway
from tests.fixtures.metrics import metric_value
from tests.fixtures.processes import ServerProcess, free_port
from tests.gateway.observability.log_lines import wait_for_line

CHAT = {"model": "tenant-a", "messages": [{"role": "user", "content": "hello metrics"}]}
WIRING_HINT = "(is gateway.observability wired into the pipeline? see the observability report)"


def chat(gateway: Gateway, stream: bool, **extra: object) -> dict:
    """One chat completion; returns its usage as the client saw it."""
    body = {**CHAT, "max_tokens": 6, "stream": stream, **extra}
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    if not stream:
        return response.json()["usage"]
    events = [e for e in response.content.split(b"\n\n") if e and e != b"data: [DONE]"]
    return orjson.loads(events[-1][6:])["usage"]


def delta(url: str, name: str, **labels: str) -> Callable[[], float]:
    """Read a sample now; the returned function gives how much it grew since."""
    before = metric_value(url, name, **labels)
    return lambda: metric_value(url, name, **labels) - before


def test_requests_are_counted_by_the_surface_they_used(gateway: Gateway) -> None:
    ok = {"tenant": "acme", "model": "tenant-a", "status": "200"}
    chats = delta(gateway.url, "vllm_gateway_requests_total", surface="chat.completions", **ok)
    responses = delta(gateway.url, "vllm_gateway_requests_total", surface="responses", **ok)
    messages = delta(gateway.url, "vllm_gateway_requests_total", surface="messages", **ok)
    chat(gateway, stream=False)
    reply = httpx.post(
        gateway.url + "/v1/responses",
        json={"model": "tenant-a", "input": "hi", "max_output_tokens": 4},
        headers=gateway.headers,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert (chats(), responses(), messages()) == (1, 1, 0)


def test_requests_latency_ttft_and_tokens_are_counted(
    gateway: Gateway, standin: ServerProcess
) -> None:
    ok = {"tenant": "acme", "model": "tenant-a", "status": "200"}
    requests = delta(gateway.url, "vllm_gateway_requests_total", **ok)
    durations = delta(gateway.url, "vllm_gateway_request_duration_seconds_count", model="tenant-a")
    ttfts = delta(gateway.url, "vllm_gateway_time_to_first_token_seconds_count", model="tenant-a")
    prompt = delta(gateway.url, "vllm_gateway_prompt_tokens_total", tenant="acme", model="tenant-a")
    completion = delta(
        gateway.url, "vllm_gateway_completion_tokens_total", tenant="acme", model="tenant-a"
    )
    overhead_whole = delta(gateway.url, "vllm_gateway_overhead_seconds_count", stream="false")
    overhead_stream = delta(gateway.url, "vllm_gateway_overhead_seconds_count", stream="true")
    upstream_ok = delta(
        gateway.url, "vllm_gateway_upstream_requests_total", replica=standin.url, outcome="ok"
    )

    usages = [chat(gateway, stream=False) for _ in range(3)]
    usages += [chat(gateway, stream=True) for _ in range(2)]

    assert requests() == 5, WIRING_HINT
    assert durations() == 5
    assert ttfts() == 2  # only streams have a first token to time
    assert prompt() == sum(usage["prompt_tokens"] for usage in usages)
    assert completion() == sum(usage["completion_tokens"] for usage in usages)
    assert overhead_whole() == 3
    assert overhead_stream() == 2
    assert upstream_ok() == 5
    in_flight = metric_value(gateway.url, "vllm_gateway_upstream_in_flight", replica=standin.url)
    assert in_flight == 0


def test_rejected_requests_have_bounded_labels(gateway: Gateway) -> None:
    unknown_model = delta(
        gateway.url, "vllm_gateway_requests_total", tenant="acme", model="unknown", status="404"
    )
    bad_key = delta(
        gateway.url, "vllm_gateway_requests_total", tenant="unknown", model="unknown", status="401"
    )
    raw_model = f"no-such-model-{uuid.uuid4().hex}"
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**CHAT, "model": raw_model},
        headers=gateway.headers,
    )
    assert response.status_code == 404
    wrong_key = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-not-a-key"},
    )
    assert wrong_key.status_code == 401

    assert unknown_model() == 1, WIRING_HINT
    assert bad_key() == 1
    page = httpx.get(gateway.url + "/metrics").text
    assert raw_model not in page
    assert gateway.api_key not in page
    assert '="key_' not in page  # no key ids as label values


def test_upstream_errors_are_counted_by_replica(gateway: Gateway, standin: ServerProcess) -> None:
    errors = delta(
        gateway.url, "vllm_gateway_upstream_requests_total", replica=standin.url, outcome="error"
    )
    failed = delta(
        gateway.url, "vllm_gateway_requests_total", tenant="acme", model="tenant-a", status="500"
    )
    httpx.post(f"{standin.url}/standin/faults", json={"fail_rate": 1}).raise_for_status()
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=CHAT, headers=gateway.headers, timeout=30
    )
    assert response.status_code == 500
    assert errors() == 1, WIRING_HINT
    assert failed() == 1


def test_key_cache_lookups_are_counted(gateway: Gateway) -> None:
    hits = delta(gateway.url, "vllm_gateway_key_cache_lookups_total", result="hit")
    misses = delta(gateway.url, "vllm_gateway_key_cache_lookups_total", result="miss")
    for _ in range(5):
        chat(gateway, stream=False)
    assert hits() + misses() == 5, WIRING_HINT
    assert hits() >= 1


def test_one_access_line_per_request_without_secrets(gateway: Gateway) -> None:
    request_id = f"obs-{uuid.uuid4().hex}"
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**CHAT, "max_tokens": 5},
        headers={**gateway.headers, "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200
    usage = response.json()["usage"]

    line = wait_for_line(gateway.server, request_id, WIRING_HINT)
    assert line["event"] == "request"
    assert line["tenant"] == "acme"
    assert line["tenant_id"] == gateway.tenant_id
    assert line["key_id"].startswith("key_")
    assert line["model"] == "tenant-a"
    assert line["upstream_model"] == "tenant-a"
    assert line["replica"].startswith("http://127.0.0.1:")
    assert line["status"] == 200
    assert line["stream"] is False
    assert line["latency_ms"] > 0
    assert line["ttft_ms"] is None
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    log = gateway.server.log()
    assert gateway.api_key not in log
    assert "hello metrics" not in log  # prompts stay out unless the debug setting says so


def test_prompts_are_logged_only_with_the_debug_setting(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    debug = start_gateway(
        standin.url, tmp_path_factory.mktemp("gateway-debug"), observability__log_prompts="true"
    )
    try:
        request_id = f"obs-{uuid.uuid4().hex}"
        response = httpx.post(
            debug.url + "/v1/chat/completions",
            json={**CHAT, "max_tokens": 2},
            headers={**debug.headers, "x-request-id": request_id},
            timeout=30,
        )
        assert response.status_code == 200
        prompt = wait_for_line(debug.server, request_id, WIRING_HINT, event="prompt")
        assert prompt["messages"] == CHAT["messages"]
        assert debug.api_key not in debug.server.log()
    finally:
        debug.stop()


def test_metrics_can_require_the_admin_key(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    guarded = start_gateway(
        standin.url,
        tmp_path_factory.mktemp("gateway-guarded"),
        observability__metrics_require_admin_key="true",
    )
    try:
        assert httpx.get(guarded.url + "/metrics").status_code == 401, WIRING_HINT
        wrong = httpx.get(guarded.url + "/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        page = httpx.get(guarded.url + "/metrics", headers=admin)
        assert page.status_code == 200
        assert "# TYPE vllm_gateway_requests_total counter" in page.text
    finally:
        guarded.stop()


def _count_ok(url: str) -> float:
    return metric_value(
        url, "vllm_gateway_requests_total", tenant="acme", model="tenant-a", status="200"
    )


def test_several_workers_report_one_total_on_their_own_port(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    metrics_port = free_port()
    workers = start_gateway(
        standin.url,
        tmp_path_factory.mktemp("gateway-workers"),
        server__workers="2",
        observability__metrics_port=str(metrics_port),
    )
    try:
        for _ in range(8):
            chat(workers, stream=False)
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        assert _count_ok(metrics_url) == 8, WIRING_HINT
        assert httpx.get(workers.url + "/metrics").status_code == 404
    finally:
        workers.stop()


def test_several_workers_report_one_total_on_the_main_port(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workers = start_gateway(
        standin.url, tmp_path_factory.mktemp("gateway-workers-main"), server__workers="2"
    )
    try:
        for _ in range(6):
            chat(workers, stream=True)
        # each scrape is answered by whichever worker accepts it: all must see every request
        assert [_count_ok(workers.url) for _ in range(4)] == [6.0] * 4, WIRING_HINT
    finally:
        workers.stop()
