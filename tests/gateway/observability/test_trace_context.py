"""The trace context the gateway takes from clients and gives vLLM, its sampling, its
configuration from the settings and OTEL_* variables, and content capture: the app in this
process in front of the in-memory fake vLLM, exporting to the real OTLP receiver."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.observability.tracing import Tracing, _parse_traceparent
from gateway.settings import TracingSettings
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import ADMIN_KEY
from tests.fixtures.in_process import FakeVllm, in_process_gateway
from tests.fixtures.otlp import KIND_CLIENT, KIND_SERVER, OtlpReceiver

EMAIL = "jane.doe@example.com"
CHAT = {"model": "tenant-a", "messages": [{"role": "user", "content": f"mail {EMAIL}"}]}
REDACT_EMAIL = {
    "policies": {
        "no-email": {"rules": [{"name": "email-out", "detector": "email", "action": "redact"}]}
    },
    "default_policy": "no-email",
}


async def answer(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    message = {"role": "assistant", "content": f"write to {EMAIL}"}
    usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    reply = {"id": "c", "object": "chat.completion", "model": body["model"], "usage": usage}
    reply["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
    return MemoryResponse(200, orjson.dumps(reply))


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def traceparent(flags: str = "01") -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}", trace_id


async def send(
    tmp_path: Path, headers: dict[str, str], body: dict[str, Any] = CHAT, **settings: Any
) -> tuple[FakeVllm, Any]:
    """One chat request through a gateway started for it: the fake vLLM (what it was sent)
    and the response. The gateway's shutdown exports its spans."""
    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = answer
    async with in_process_gateway(fake, tmp_path, **settings) as (client, key):
        response = await client.post(
            "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}", **headers},
        )
    return fake, response


async def test_with_tracing_off_the_clients_context_reaches_vllm_as_it_came(
    tmp_path: Path,
) -> None:
    header, _ = traceparent()
    context = {"traceparent": header, "tracestate": "vendor=abc"}
    fake, response = await send(tmp_path, context)
    assert response.status_code == 200
    sent = fake.inference_requests[0].headers
    assert (sent["traceparent"], sent["tracestate"]) == (header, "vendor=abc")
    assert "traceparent" not in response.headers
    fake, _ = await send(tmp_path / "plain", {})
    assert "traceparent" not in fake.inference_requests[0].headers


async def test_vllm_continues_the_gateways_upstream_span(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    header, trace_id = traceparent()
    context = {"traceparent": header, "tracestate": "vendor=abc"}
    tracing = {"endpoint": otlp_receiver.endpoint}  # OpenTelemetry's default sampler
    fake, response = await send(tmp_path, context, tracing=tracing)
    version, sent_trace, sent_parent, flags = (
        fake.inference_requests[0].headers["traceparent"].split("-")
    )
    assert (version, sent_trace, flags) == ("00", trace_id, "01")
    assert fake.inference_requests[0].headers["tracestate"] == "vendor=abc"
    spans = otlp_receiver.trace(trace_id)
    [upstream] = [span for span in spans if span.kind == KIND_CLIENT]
    [root] = [span for span in spans if span.kind == KIND_SERVER]
    assert sent_parent == upstream.span_id  # vLLM's span will be the upstream span's child
    assert response.headers["traceparent"] == f"00-{trace_id}-{root.span_id}-01"


async def test_an_unsampled_request_tells_vllm_so_and_records_nothing(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    tracing = {"endpoint": otlp_receiver.endpoint, "sample_ratio": 0.0}
    fake, response = await send(tmp_path, {}, tracing=tracing)
    assert response.status_code == 200
    assert "traceparent" not in response.headers
    _, trace_id, _, flags = fake.inference_requests[0].headers["traceparent"].split("-")
    assert flags == "00"  # vLLM's parent-based sampler drops it as the gateway did
    assert otlp_receiver.trace(trace_id) == []


async def test_a_malformed_traceparent_starts_a_new_trace(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    tracing = {"endpoint": otlp_receiver.endpoint, "sample_ratio": 1.0}
    bad = "00-" + "0" * 32 + "-" + secrets.token_hex(8) + "-01"  # all-zero trace id
    _, response = await send(tmp_path, {"traceparent": bad}, tracing=tracing)
    trace_id = response.headers["traceparent"].split("-")[1]
    assert trace_id != "0" * 32
    [root] = [s for s in otlp_receiver.trace(trace_id) if s.kind == KIND_SERVER]
    assert root.parent_span_id == ""


async def test_content_capture_records_what_the_tenants_policy_left(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    header, trace_id = traceparent()
    tracing = {"endpoint": otlp_receiver.endpoint, "capture_content": True}
    _, response = await send(
        tmp_path, {"traceparent": header}, tracing=tracing, safety=REDACT_EMAIL
    )
    assert response.status_code == 200
    [root] = [s for s in otlp_receiver.trace(trace_id) if s.kind == KIND_SERVER]
    prompt = orjson.loads(root.attributes["gen_ai.input.messages"])
    assert prompt == [{"role": "user", "content": "mail [REDACTED:EMAIL]"}]
    assert "write to [REDACTED:EMAIL]" in root.attributes["gateway.output.content"]
    assert EMAIL not in str(root.attributes)
    actions = [attributes for name, attributes, _ in root.events if name == "gateway.safety"]
    assert {(a["gateway.safety.rule"], a["gateway.safety.direction"]) for a in actions} == {
        ("email-out", "input"),
        ("email-out", "output"),
    }


async def test_content_is_not_captured_by_default(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    header, trace_id = traceparent()
    tracing = {"endpoint": otlp_receiver.endpoint}
    await send(tmp_path, {"traceparent": header}, tracing=tracing)
    [root] = [s for s in otlp_receiver.trace(trace_id) if s.kind == KIND_SERVER]
    assert "gen_ai.input.messages" not in root.attributes
    assert "gateway.output.content" not in root.attributes


@pytest.mark.parametrize(
    ("environ", "parent_based", "ratio"),
    [
        ({}, True, 1.0),  # OpenTelemetry's default: parentbased_always_on
        ({"OTEL_TRACES_SAMPLER": "always_off"}, False, 0.0),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            True,
            0.25,
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, False, 0.5),
    ],
)
def test_the_sampler_comes_from_otel_traces_sampler(
    environ: dict[str, str], parent_based: bool, ratio: float
) -> None:
    tracing = Tracing(TracingSettings(endpoint="http://c:4318"), environ)
    assert (tracing.parent_based, tracing.ratio) == (parent_based, ratio)


def test_the_settings_ratio_wins_over_the_environment() -> None:
    environ = {"OTEL_TRACES_SAMPLER": "always_on"}
    tracing = Tracing(TracingSettings(endpoint="http://c:4318", sample_ratio=0.01), environ)
    assert (tracing.parent_based, tracing.ratio) == (True, 0.01)


def test_tracing_is_on_with_an_endpoint_anywhere_and_off_when_disabled() -> None:
    assert not Tracing(TracingSettings(), {}).enabled
    assert Tracing(TracingSettings(endpoint="http://tempo:4318"), {}).enabled
    assert Tracing(TracingSettings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).enabled
    traces_url = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}
    assert Tracing(TracingSettings(), traces_url).enabled
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    assert not Tracing(TracingSettings(), disabled).enabled


def test_unsupported_samplers_and_protocols_refuse_to_start() -> None:
    remote = {"OTEL_TRACES_SAMPLER": "jaeger_remote"}
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER='jaeger_remote'"):
        Tracing(TracingSettings(endpoint="http://c:4318"), remote)
    assert not Tracing(TracingSettings(), remote).enabled  # no endpoint: not even read
    grpc = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(ValueError, match="OTLP/HTTP only"):
        asyncio.run(Tracing(TracingSettings(endpoint="http://c:4317"), grpc).start())


def test_the_service_is_named_by_settings_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    resource = Tracing(TracingSettings()).resource().attributes
    assert resource["service.name"] == "vllm-gateway"
    assert resource["deployment.environment"] == "prod"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-gateway")
    assert Tracing(TracingSettings()).resource().attributes["service.name"] == "edge-gateway"
    named = TracingSettings(service_name="gw-eu", resource_attributes={"region": "eu"})
    attributes = Tracing(named).resource().attributes
    assert (attributes["service.name"], attributes["region"]) == ("gw-eu", "eu")


async def test_a_wait_in_the_fair_queue_is_a_child_span(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    release = asyncio.Event()

    async def held(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        await release.wait()
        return await answer(request, body)

    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = held
    tracing = {"endpoint": otlp_receiver.endpoint}
    isolation = {"fair_queue": {"enabled": True, "max_in_flight": 1, "reserved_share": 0}}
    contexts = [traceparent() for _ in range(2)]
    async with in_process_gateway(fake, tmp_path, tracing=tracing, isolation=isolation) as (
        client,
        key,
    ):

        async def one(header: str) -> int:
            headers = {"authorization": f"Bearer {key}", "traceparent": header}
            response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            return response.status_code

        requests = [asyncio.create_task(one(header)) for header, _ in contexts]
        while len(fake.inference_requests) < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the second request is queued behind the first's slot
        release.set()
        assert await asyncio.gather(*requests) == [200, 200]
    queued = [
        span
        for _, trace_id in contexts
        for span in otlp_receiver.trace(trace_id)
        if span.name == "gateway.fair_queue"
    ]
    assert len(queued) == 1
    assert queued[0].end_ns - queued[0].start_ns >= 40_000_000


async def test_loading_the_adapter_first_is_a_child_span(
    tmp_path: Path, otlp_receiver: OtlpReceiver
) -> None:
    async def loaded(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        return MemoryResponse(200, b"Success: LoRA adapter added.", content_type="text/plain")

    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = answer
    fake.routes["/v1/load_lora_adapter"] = loaded
    models = {"fresh": {"base_model": "base", "adapter": "fresh-lora"}}
    tracing = {"endpoint": otlp_receiver.endpoint}
    header, trace_id = traceparent()
    async with in_process_gateway(fake, tmp_path, models, tracing=tracing) as (client, key):
        registered = await client.post(
            "/admin/v1/adapters",
            json={"name": "fresh-lora", "path": "/adapters/fresh-lora", "base_model": "base"},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert registered.status_code == 201, registered.text
        response = await client.post(
            "/v1/chat/completions",
            json={**CHAT, "model": "fresh"},
            headers={"authorization": f"Bearer {key}", "traceparent": header},
        )
        assert response.status_code == 200, response.text
    [load] = [span for span in otlp_receiver.trace(trace_id) if span.name == "gateway.adapter.load"]
    assert load.attributes["gateway.upstream.adapter"] == "fresh-lora"
    [upstream] = [span for span in otlp_receiver.trace(trace_id) if span.kind == KIND_CLIENT]
    assert load.end_ns <= upstream.start_ns  # loaded before the request went to vLLM


TRACE_HEX, SPAN_HEX = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (f"00-{TRACE_HEX}-{SPAN_HEX}-01", (int(TRACE_HEX, 16), int(SPAN_HEX, 16), 1)),
        (f"00-{TRACE_HEX}-{SPAN_HEX}-00", (int(TRACE_HEX, 16), int(SPAN_HEX, 16), 0)),
        # a later version may add fields: its first four are read as version 00's
        (
            f"cc-{TRACE_HEX}-{SPAN_HEX}-01-what-comes-next",
            (int(TRACE_HEX, 16), int(SPAN_HEX, 16), 1),
        ),
        (f"ff-{TRACE_HEX}-{SPAN_HEX}-01", None),  # version ff is invalid
        (f"00-{TRACE_HEX}-{SPAN_HEX}-01-extra", None),  # version 00 has exactly four fields
        (f"00-{TRACE_HEX.upper()}-{SPAN_HEX}-01", None),  # lower-case hex only
        (f"00-{TRACE_HEX}-{'0' * 16}-01", None),  # an all-zero parent id
        (f"00-{TRACE_HEX[:-1]}-{SPAN_HEX}-01", None),
        ("not a traceparent", None),
    ],
)
def test_traceparent_is_read_as_w3c_trace_context_says(
    header: str, parsed: tuple[int, int, int] | None
) -> None:
    assert _parse_traceparent(header.encode()) == parsed
