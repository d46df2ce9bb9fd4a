"""The pipeline end to end in this process: the app over httpx's ASGITransport, in front of
the in-memory fake vLLM (tests/fixtures/in_process.py). Milliseconds per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from gateway.usage.backend import RecordFilter
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.gateway import ADMIN_KEY
from tests.fixtures.in_process import FakeVllm, call_once, in_process_gateway, sse
from tests.gateway.safety.helpers import rule

MAILS = rule("mails", "email", "redact", "input")

SUPPORT_BOT = {"support-bot": {"base_model": "base", "adapter": "tenant-a"}}


def chunk(text: str, model: str = "tenant-a", finish: str | None = None) -> dict[str, Any]:
    delta = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [delta],
    }


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


async def streamed(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    events = sse(
        chunk("Hel"),
        chunk("lo", finish="stop"),
        {"id": "chatcmpl-1", "model": "tenant-a", "choices": [], "usage": USAGE},
    )
    return MemoryResponse(200, chunks=events, content_type="text/event-stream")


async def whole(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
        "usage": USAGE,
    }
    return MemoryResponse(200, orjson.dumps(answer))


def chat(model: str = "support-bot", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_a_whole_answer_carries_the_public_name_and_vllm_gets_the_adapter(
    tmp_path: Path,
) -> None:
    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = whole
    response = await call_once(fake, tmp_path, "/v1/chat/completions", chat(), SUPPORT_BOT)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "support-bot"
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert sent["model"] == "tenant-a"
    assert "cache_salt" in sent  # the tenant's isolation, added by its stage


async def test_a_stream_is_renamed_and_the_usage_chunk_it_did_not_ask_for_is_dropped(
    tmp_path: Path,
) -> None:
    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = streamed
    body = chat(stream=True)
    response = await call_once(fake, tmp_path, "/v1/chat/completions", body, SUPPORT_BOT)
    assert response.status_code == 200
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event[6:]) for event in events[:-1]]
    assert [c["model"] for c in chunks] == ["support-bot", "support-bot"]
    assert all("usage" not in c for c in chunks)
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert sent["stream_options"] == {"include_usage": True}


async def test_a_stream_that_ends_without_done_ends_with_a_502_event(tmp_path: Path) -> None:
    async def broken(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        events = sse(chunk("Hel"), done=False)
        return MemoryResponse(200, chunks=events, content_type="text/event-stream")

    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = broken
    body = chat("tenant-a", stream=True)
    response = await call_once(fake, tmp_path, "/v1/chat/completions", body)
    last = [event for event in response.text.split("\n\n") if event][-1]
    error = json.loads(last[6:])["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "bad_gateway")


async def test_unknown_models_and_upstream_errors_keep_the_openai_error_shape(
    tmp_path: Path,
) -> None:
    async def refused(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        error = {"message": "max_tokens is too large", "type": "BadRequestError", "code": 400}
        return MemoryResponse(400, orjson.dumps({"error": error}))

    fake = FakeVllm()
    fake.routes["/v1/completions"] = refused
    async with in_process_gateway(fake, tmp_path) as (client, key):
        headers = {"authorization": f"Bearer {key}"}
        unknown = await client.post("/v1/chat/completions", json=chat("nope"), headers=headers)
        relayed = await client.post(
            "/v1/completions", json={"model": "base", "prompt": "hi"}, headers=headers
        )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert relayed.status_code == 400
    assert relayed.json()["error"]["message"] == "max_tokens is too large"
    assert [r.url.rsplit("/", 1)[-1] for r in fake.inference_requests] == ["completions"]


async def test_the_usage_record_names_the_route_the_finish_and_the_safety_action(
    tmp_path: Path,
) -> None:
    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = streamed
    policies = {"no-mail": {"rules": [MAILS]}}
    async with in_process_gateway(fake, tmp_path, SUPPORT_BOT, safety={"policies": policies}) as (
        client,
        key,
    ):
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        tenant = (await client.get("/admin/v1/tenants", headers=admin)).json()["items"][0]
        await client.patch(
            f"/admin/v1/tenants/{tenant['id']}", json={"safety_policy": "no-mail"}, headers=admin
        )
        body = {
            "model": "support-bot",
            "messages": [{"role": "user", "content": "write to a@b.com"}],
            "stream": True,
        }
        answer = await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 200, answer.text
    backend = SqliteUsageBackend(tmp_path / "gateway.db")
    (record,) = await backend.read_records(RecordFilter(tenant["id"]))
    await backend.close()
    assert (record.base_model, record.adapter, record.upstream_model) == (
        "base",
        "tenant-a",
        "tenant-a",
    )
    assert record.finish_reason == "stop"
    assert record.safety_action == "input:redact"
    assert record.endpoint == "/v1/chat/completions"
