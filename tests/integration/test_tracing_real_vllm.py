"""One trace from the client through the gateway into a real vLLM: the session's vLLM runs with
`--otlp-traces-endpoint` (tests/fixtures/real_vllm.py), the gateway exports to the same OTLP
receiver, and vLLM's `llm_request` span must be the child of the gateway's upstream span."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.otlp import KIND_CLIENT, KIND_SERVER, ReceivedSpan
from tests.fixtures.real_vllm import RealVllm

pytestmark = pytest.mark.vllm

VLLM_SPAN = "llm_request"  # vLLM 0.32's span per request (vllm/v1/engine/output_processor.py)


@pytest.fixture(scope="module")
def traced_gateway(
    real_vllm: RealVllm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms
        gateway = start_gateway(
            real_vllm.url,
            tmp_path_factory.mktemp("traced-gateway-vllm"),
            tracing__endpoint=real_vllm.traces.endpoint,
            tracing__sample_ratio="1.0",
        )
    yield gateway
    gateway.stop()


def traced_spans(real_vllm: RealVllm, trace_id: str) -> dict[str, ReceivedSpan]:
    """The gateway's SERVER and CLIENT spans and vLLM's span of one trace, by role."""

    def complete(spans: list[ReceivedSpan]) -> bool:
        ours = [span for span in spans if span.trace_id == trace_id]
        return {VLLM_SPAN} <= {s.name for s in ours} and {KIND_SERVER, KIND_CLIENT} <= {
            s.kind for s in ours if s.service == "vllm-gateway"
        }

    real_vllm.traces.wait_for(complete, timeout=30)  # vLLM's batch goes out every 5 s
    spans = real_vllm.traces.trace(trace_id)
    gateway = [span for span in spans if span.service == "vllm-gateway"]
    return {
        "server": next(span for span in gateway if span.kind == KIND_SERVER),
        "client": next(span for span in gateway if span.kind == KIND_CLIENT),
        "vllm": next(span for span in spans if span.name == VLLM_SPAN),
    }


@pytest.mark.parametrize("stream", [False, True])
def test_vllms_span_continues_the_gateways_trace(
    real_vllm: RealVllm, traced_gateway: Gateway, stream: bool
) -> None:
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    request_id = f"trace-test-{secrets.token_hex(4)}"
    headers = {
        **traced_gateway.headers,
        "traceparent": f"00-{client_trace}-{client_span}-01",
        "x-request-id": request_id,
    }
    body = {
        "model": "tenant-a",
        "messages": [{"role": "user", "content": "def main():"}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }
    response = httpx.post(
        traced_gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.headers["traceparent"].split("-")[1] == client_trace
    spans = traced_spans(real_vllm, client_trace)
    server, client, vllm = spans["server"], spans["client"], spans["vllm"]
    assert server.parent_span_id == client_span
    assert client.parent_span_id == server.span_id
    assert vllm.parent_span_id == client.span_id  # the traceparent the gateway sent
    assert vllm.service == "vllm"
    assert vllm.kind == KIND_SERVER
    assert request_id in vllm.attributes["gen_ai.request.id"]  # x-request-id, passed on
    assert client.start_ns <= vllm.start_ns <= vllm.end_ns <= server.end_ns
    # vLLM counts the same tokens the gateway reports
    output_tokens = server.attributes["gen_ai.usage.output_tokens"]
    assert vllm.attributes["gen_ai.usage.completion_tokens"] == output_tokens
    assert client.attributes["gen_ai.request.model"] == "tenant-a"
    assert client.attributes["server.port"] == int(real_vllm.url.rsplit(":", 1)[1])
