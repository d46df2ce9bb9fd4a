"""Traces end to end: a gateway process in front of the stand-in exports its spans over
OTLP/HTTP to a real receiver (tests/fixtures/otlp.py), which decodes them with
opentelemetry-proto; the tests assert the span tree and its attributes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from bench.processes import ServerProcess
from tests.fixtures.gateway import Gateway, limited_key, start_gateway
from tests.fixtures.otlp import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, OtlpReceiver, ReceivedSpan
from tests.fixtures.standin import set_faults

CHAT = {"model": "tenant-a", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@pytest.fixture(scope="module")
def traced_gateway(
    standin: ServerProcess, otlp_receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway that samples every request and exports to the module's receiver at once."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: the tests need not wait 5 s
        env.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
        server = start_gateway(
            standin.url,
            tmp_path_factory.mktemp("traced-gateway"),
            tracing__endpoint=otlp_receiver.endpoint,
            tracing__sample_ratio="1.0",
        )
    yield server
    server.stop()


def traceparent(sampled: bool = True) -> tuple[str, str, str]:
    """A client's traceparent: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


def post(
    gateway: Gateway,
    body: dict[str, object],
    key: str | None = None,
    path: str = "/v1/chat/completions",
) -> tuple[httpx.Response, str, str]:
    """POST with a sampled client traceparent: (response, trace id, the client's span id)."""
    header, trace_id, span_id = traceparent()
    headers = {"authorization": f"Bearer {key or gateway.api_key}", "traceparent": header}
    response = httpx.post(gateway.url + path, json=body, headers=headers, timeout=30)
    return response, trace_id, span_id


def request_spans(
    receiver: OtlpReceiver, trace_id: str, upstream: bool = True
) -> tuple[ReceivedSpan, ReceivedSpan | None, list[ReceivedSpan]]:
    """The trace's gateway SERVER span, its upstream CLIENT span (when `upstream`), all."""

    def complete(spans: list[ReceivedSpan]) -> bool:
        kinds = {span.kind for span in spans if span.trace_id == trace_id}
        return KIND_SERVER in kinds and (not upstream or KIND_CLIENT in kinds)

    receiver.wait_for(complete)
    spans = receiver.trace(trace_id)
    [root] = [span for span in spans if span.kind == KIND_SERVER]
    clients = [span for span in spans if span.kind == KIND_CLIENT]
    return root, clients[0] if clients else None, spans


def test_a_request_is_one_trace_with_the_genai_attributes(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver, standin: ServerProcess
) -> None:
    response, trace_id, client_span = post(traced_gateway, CHAT)
    assert response.status_code == 200
    # the response names the trace, so that a user can quote it
    returned = response.headers["traceparent"].split("-")
    assert returned[1] == trace_id and returned[3] == "01"
    root, upstream, spans = request_spans(otlp_receiver, trace_id)
    assert upstream is not None
    assert root.service == "gateway-under-test"
    assert root.parent_span_id == client_span  # continues the client's trace
    assert returned[2] == root.span_id
    assert root.name == "chat tenant-a"
    attributes = root.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "tenant-a"  # the tenant's public name
    assert attributes["gateway.upstream.model"] == "tenant-a"
    assert attributes["gateway.tenant.id"] == traced_gateway.tenant_id
    assert attributes["gateway.key.id"].startswith("key_")
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.route"] == "/v1/chat/completions"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] in (["stop"], ["length"])
    assert "error.type" not in attributes
    assert not any(traced_gateway.api_key in str(value) for value in attributes.values())
    # the call to vLLM: a CLIENT child span, whose context went to the replica
    assert upstream.parent_span_id == root.span_id
    assert upstream.attributes["server.address"] == "127.0.0.1"
    assert upstream.attributes["server.port"] == int(standin.url.rsplit(":", 1)[1])
    assert upstream.attributes["gateway.upstream.adapter"] == "tenant-a"
    assert upstream.attributes["gateway.upstream.base_model"] == "base"
    assert upstream.attributes["http.response.status_code"] == 200
    assert upstream.event_names == ["gateway.upstream.first_byte"]
    # the stages that can wait: the limits' answer, the key (from memory or the store)
    names = {span.name for span in spans}
    assert "gateway.limits" in names
    assert "gateway.auth.store_read" in names or "gateway.auth" in root.event_names
    limits = next(span for span in spans if span.name == "gateway.limits")
    assert limits.parent_span_id == root.span_id
    assert root.start_ns <= limits.start_ns <= limits.end_ns <= upstream.end_ns <= root.end_ns


def test_a_stream_records_its_first_event_and_its_end(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver
) -> None:
    response, trace_id, _ = post(traced_gateway, {**CHAT, "model": "base", "stream": True})
    assert response.status_code == 200
    root, upstream, _ = request_spans(otlp_receiver, trace_id)
    assert root.attributes["gateway.stream"] is True
    assert root.event_names[-2:] == ["gateway.stream.first_event", "gateway.stream.end"]
    assert root.event("gateway.stream.end")["gateway.stream.events"] > 1
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    assert root.attributes["gen_ai.response.finish_reasons"] in (["stop"], ["length"])
    assert root.status_code != STATUS_ERROR
    assert upstream is not None and upstream.attributes["gen_ai.request.model"] == "base"


def test_a_cut_stream_is_an_error_with_its_cause(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver, standin: ServerProcess
) -> None:
    set_faults(standin, cut_after_chunks=3)
    response, trace_id, _ = post(traced_gateway, {**CHAT, "stream": True, "max_tokens": 16})
    assert response.status_code == 200  # the headers went out before the cut
    root, upstream, _ = request_spans(otlp_receiver, trace_id)
    assert root.status_code == STATUS_ERROR
    assert root.attributes["http.response.status_code"] == 502
    cut = root.event("gateway.stream.cut")
    assert cut["error.type"] == root.attributes["error.type"] != ""
    assert "gateway.stream.end" not in root.event_names
    assert upstream is not None


def test_a_429_is_traced_with_the_limit_that_refused(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver
) -> None:
    key = limited_key(traced_gateway, {"requests_per_minute": 1})
    assert post(traced_gateway, CHAT, key)[0].status_code == 200
    response, trace_id, _ = post(traced_gateway, CHAT, key)
    assert response.status_code == 429
    assert response.headers["traceparent"].split("-")[1] == trace_id
    root, upstream, spans = request_spans(otlp_receiver, trace_id, upstream=False)
    assert upstream is None  # refused before vLLM
    assert root.attributes["http.response.status_code"] == 429
    assert root.attributes["error.type"] == "rate_limit_exceeded"
    assert root.status_code != STATUS_ERROR  # a 4xx is the client's, not the server's
    [limits] = [span for span in spans if span.name == "gateway.limits"]
    assert limits.status_code == STATUS_ERROR
    assert limits.attributes["error.type"] == "rate_limit_exceeded"


def test_an_upstream_error_fails_both_spans(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver, standin: ServerProcess
) -> None:
    set_faults(standin, fail_rate=1)
    response, trace_id, _ = post(traced_gateway, CHAT)
    assert response.status_code == 500
    root, upstream, _ = request_spans(otlp_receiver, trace_id)
    assert root.status_code == STATUS_ERROR
    assert root.attributes["http.response.status_code"] == 500
    assert upstream is not None and upstream.status_code == STATUS_ERROR
    assert upstream.attributes["error.type"] == "500"


def test_rejected_requests_are_traced(traced_gateway: Gateway, otlp_receiver: OtlpReceiver) -> None:
    unknown_key, trace_id, _ = post(traced_gateway, CHAT, key="sk-not-a-key")
    assert unknown_key.status_code == 401
    root, _, _ = request_spans(otlp_receiver, trace_id, upstream=False)
    assert root.attributes["http.response.status_code"] == 401
    assert "gateway.tenant.id" not in root.attributes
    unknown_model, trace_id, _ = post(traced_gateway, {**CHAT, "model": "no-such-model"})
    assert unknown_model.status_code == 404
    root, _, _ = request_spans(otlp_receiver, trace_id, upstream=False)
    assert root.attributes["http.response.status_code"] == 404
    assert root.attributes["error.type"] == "model_not_found"
    assert root.attributes["gateway.tenant.id"] == traced_gateway.tenant_id


@pytest.mark.parametrize(
    ("path", "body", "operation"),
    [
        ("/v1/completions", {"model": "base", "prompt": "hi", "max_tokens": 4}, "text_completion"),
        ("/v1/embeddings", {"model": "base", "input": "hi"}, "embeddings"),
        (
            "/v1/messages",
            {"model": "base", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
            "chat",
        ),
        ("/v1/responses", {"model": "base", "input": "hi", "max_output_tokens": 4}, "chat"),
    ],
)
def test_every_surface_is_traced(
    traced_gateway: Gateway,
    otlp_receiver: OtlpReceiver,
    path: str,
    body: dict[str, object],
    operation: str,
) -> None:
    response, trace_id, _ = post(traced_gateway, body, path=path)
    assert response.status_code == 200, response.text
    root, upstream, _ = request_spans(otlp_receiver, trace_id)
    assert root.name == f"{operation} base"
    assert root.attributes["gen_ai.operation.name"] == operation
    assert root.attributes["http.route"] == path
    assert upstream is not None and upstream.parent_span_id == root.span_id


def test_a_client_that_does_not_sample_is_followed(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver
) -> None:
    header, trace_id, _ = traceparent(sampled=False)
    headers = {**traced_gateway.headers, "traceparent": header}
    response = httpx.post(traced_gateway.url + "/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 200
    assert "traceparent" not in response.headers
    _, sampled_trace, _ = post(traced_gateway, CHAT)  # exported after the other
    request_spans(otlp_receiver, sampled_trace)
    assert otlp_receiver.trace(trace_id) == []


def test_metrics_and_logs_link_to_the_trace(
    traced_gateway: Gateway, otlp_receiver: OtlpReceiver
) -> None:
    response, trace_id, _ = post(traced_gateway, {**CHAT, "stream": True})
    assert response.status_code == 200
    request_spans(otlp_receiver, trace_id)
    openmetrics = httpx.get(
        traced_gateway.url + "/metrics", headers={"accept": "application/openmetrics-text"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = [
        line
        for line in openmetrics.text.splitlines()
        if f'trace_id="{trace_id}"' in line
        and line.startswith(
            (
                "vllm_gateway_request_duration_seconds_bucket",
                "vllm_gateway_time_to_first_token_seconds_bucket",
            )
        )
    ]
    assert len(exemplars) >= 2, "no exemplar on the latency and TTFT histograms"
    assert "trace_id" not in httpx.get(traced_gateway.url + "/metrics").text  # plain format
    log = Path(traced_gateway.server.log_path).read_bytes().splitlines()
    lines = [orjson.loads(line) for line in log if line.startswith(b'{"ts"')]
    assert any(line.get("trace_id") == trace_id for line in lines)
