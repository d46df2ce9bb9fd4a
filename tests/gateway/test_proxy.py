"""The OpenAI surface through the gateway, over real HTTP, against the stand-in upstream."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.fixtures.gateway import Gateway
from tests.fixtures.processes import ServerProcess

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}


def sse_events(body: bytes) -> list[bytes]:
    return [event for event in body.split(b"\n\n") if event]


def chunks(body: bytes) -> list[dict]:
    return [orjson.loads(e[6:]) for e in sse_events(body) if e != b"data: [DONE]"]


def strip_volatile(chunk: dict) -> dict:
    return {k: v for k, v in chunk.items() if k not in ("id", "created")}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/v1/completions", {"model": "base", "prompt": "hello there", "max_tokens": 8}),
        ("/v1/embeddings", {"model": "base", "input": ["a", "b"]}),
    ],
)
def test_answers_equal_direct(
    gateway: Gateway, standin: ServerProcess, path: str, body: dict
) -> None:
    direct = httpx.post(standin.url + path, json=body)
    proxied = httpx.post(gateway.url + path, json=body, headers=gateway.headers)
    assert proxied.status_code == direct.status_code == 200
    assert strip_volatile(proxied.json()) == strip_volatile(direct.json())
    assert float(proxied.headers["x-gateway-overhead-ms"]) >= 0
    assert proxied.headers["x-request-id"]


def test_adapter_names_reach_the_upstream(gateway: Gateway) -> None:
    answers = {
        model: httpx.post(
            gateway.url + "/v1/chat/completions",
            json={**CHAT, "model": model},
            headers=gateway.headers,
        ).json()["choices"][0]["message"]["content"]
        for model in ("base", "tenant-a", "tenant-b")
    }
    assert len(set(answers.values())) == 3


def test_client_request_id_is_kept(gateway: Gateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=CHAT,
        headers={**gateway.headers, "x-request-id": "trace-42"},
    )
    assert response.headers["x-request-id"] == "trace-42"


def test_stream_is_relayed_event_by_event_without_the_forced_usage_chunk(
    gateway: Gateway, standin: ServerProcess
) -> None:
    body = {**CHAT, "stream": True}
    direct = httpx.post(standin.url + "/v1/chat/completions", json=body)
    proxied = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers)
    assert proxied.headers["content-type"].startswith("text/event-stream")
    assert proxied.headers["x-accel-buffering"] == "no"
    assert sse_events(proxied.content)[-1] == b"data: [DONE]"
    # vLLM moves system_fingerprint from the last content chunk to the usage chunk when
    # include_usage is on, which the gateway always asks for (docs/clients.md).
    got = [strip_volatile(c) for c in chunks(proxied.content)]
    direct_chunks = [strip_volatile(c) for c in chunks(direct.content)]
    assert got == [{k: v for k, v in c.items() if k != "system_fingerprint"} for c in direct_chunks]
    assert all(c["choices"] for c in got)


def test_stream_usage_chunk_passes_when_asked(gateway: Gateway) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers)
    got = chunks(response.content)
    assert got[-1]["choices"] == []
    assert got[-1]["usage"]["completion_tokens"] == 8


def test_stream_events_arrive_as_they_are_produced(
    gateway: Gateway, standin: ServerProcess
) -> None:
    """With 8 tokens 150 ms apart, the client must see the first event long before the last."""
    httpx.post(standin.url + "/standin/faults", json={"itl_ms": 150})
    arrivals = []
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers=gateway.headers,
    ) as response:
        for _ in response.iter_raw():
            arrivals.append(len(arrivals))
    # A buffering proxy would deliver everything in one or two reads.
    assert len(arrivals) >= 8


def test_models_are_the_callers_public_names(gateway: Gateway) -> None:
    listed = httpx.get(gateway.url + "/v1/models", headers=gateway.headers).json()
    assert {entry["id"] for entry in listed["data"]} == {"base", "tenant-a", "tenant-b"}
    entry = httpx.get(gateway.url + "/v1/models/tenant-a", headers=gateway.headers).json()
    assert entry["id"] == "tenant-a" and entry["owned_by"] == "acme"
    missing = httpx.get(gateway.url + "/v1/models/nope", headers=gateway.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").status_code == 200
    assert httpx.get(gateway.url + "/readyz").json() == {"status": "ready"}
