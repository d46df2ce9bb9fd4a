"""Tool calling through the gateway: vLLM's errors that name its server flags reach tenants as
a plain "tool calling is not enabled" 400 (the codecs, in process, and a gateway process in
front of the stand-in, which answers as vLLM started without the flags), and the output guards
pass tool-call deltas through byte-identical (chat) and function-call events untouched
(Responses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.core.errors import GatewayError
from gateway.core.filters import ChunkFilter
from gateway.surfaces import ChatCompletions, Completions, Messages, Surface
from gateway.surfaces.extras import Rerank
from gateway.surfaces.responses import Responses
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import Gateway
from tests.fixtures.in_process import FakeVllm, in_process_gateway, sse
from tests.fixtures.processes import ServerProcess
from tests.gateway.safety.helpers import DONE, parse_events, rule, runtime
from tests.gateway.surfaces.test_responses import new_key

NOT_ENABLED = "Tool calling is not enabled for this model."
# vLLM 0.32's answers when started without --enable-auto-tool-choice / --tool-call-parser
VLLM_MESSAGES = [
    'tool_choice="required" requires --tool-call-parser to be set',
    'tool_choice=function "get_weather" requires --tool-call-parser to be set',
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
]
OUTPUT_RULES = (
    rule("mails", "email", "redact", "output"),
    rule("fruit", "deny_terms", "block", "output", terms=["forbidden fruit"]),
)
ARGUMENTS = ['{"to": "a', '@b.com", "body": "the forbidden', ' fruit"}']
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "send_mail",
            "parameters": {"type": "object", "properties": {"to": {"type": "string"}}},
        },
    }
]

CALL_REQUIRED = {
    "model": "base",
    "messages": [{"role": "user", "content": "mail it"}],
    "tools": TOOLS,
    "tool_choice": "required",
}


def openai_error(message: str) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}
    )


def anthropic_error(message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": "BadRequestError", "message": message}})


# --- the codecs --------------------------------------------------------------------------


@pytest.mark.parametrize("message", VLLM_MESSAGES)
@pytest.mark.parametrize("surface", [ChatCompletions(), Completions(), Responses()])
def test_errors_naming_vllms_tool_flags_become_a_plain_400(surface: Surface, message: str) -> None:
    error = surface.upstream_error(400, openai_error(message))
    assert isinstance(error, GatewayError)
    assert (error.status, error.message) == (400, NOT_ENABLED)
    assert (error.param, error.code) == ("tool_choice", "tool_calling_not_enabled")


def test_anthropics_envelope_is_rewritten_too() -> None:
    surface = Messages()
    error = surface.upstream_error(400, anthropic_error(VLLM_MESSAGES[0]))
    assert error.message == NOT_ENABLED
    status, body = surface.error_response(error)
    assert status == 400
    assert orjson.loads(body)["error"]["message"] == NOT_ENABLED


def test_other_errors_are_relayed_as_they_are() -> None:
    assert ChatCompletions().upstream_error(400, openai_error("max_tokens is too large")) is None
    assert Rerank("/v1/rerank").upstream_error(404, b'{"detail":"Not Found"}') is not None
    other = Messages().upstream_error(400, anthropic_error("max_tokens is too large"))
    assert other.message == "max_tokens is too large"


# --- in process ----------------------------------------------------------------------------


async def no_tool_parser(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    return MemoryResponse(400, openai_error(VLLM_MESSAGES[0]))  # JSON, streamed or not


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tenant_is_told_tool_calling_is_not_enabled(tmp_path: Path, stream: bool) -> None:
    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = no_tool_parser
    body = {**CALL_REQUIRED, "stream": stream}
    async with in_process_gateway(fake, tmp_path) as (client, key):
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == NOT_ENABLED
    assert "--" not in response.text


# --- the output guard never touches tool calls -------------------------------------------


def tool_chunk(call: dict[str, Any], finish: str | None = None) -> bytes:
    """A chat chunk with one tool-call delta, as vLLM 0.32 streams it (tool parser on)."""
    choice = {
        "index": 0,
        "delta": {"tool_calls": [call]},
        "logprobs": None,
        "finish_reason": finish,
        "token_ids": None,
    }
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "base",
        "choices": [choice],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def role_chunk(content: str = "") -> bytes:
    choice = {
        "index": 0,
        "delta": {"role": "assistant", "content": content},
        "logprobs": None,
        "finish_reason": None,
    }
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "base"}
    return b"data: " + orjson.dumps({**chunk, "choices": [choice]}) + b"\n\n"


def tool_stream(content: str = "") -> list[bytes]:
    first = {
        "id": "chatcmpl-tool-1",
        "type": "function",
        "index": 0,
        "function": {"name": "send_mail", "arguments": ARGUMENTS[0]},
    }
    rest = [{"index": 0, "function": {"arguments": piece}} for piece in ARGUMENTS[1:]]
    end = {"index": 0, "function": {"arguments": ""}}
    return [
        role_chunk(content),
        tool_chunk(first),
        *(tool_chunk(call) for call in rest),
        tool_chunk(end, "tool_calls"),
        DONE,
    ]


def run(guard: ChunkFilter, events: list[bytes], size: int) -> bytes:
    out = b""
    for at in range(0, len(events), size):
        out += guard.on_events(b"".join(events[at : at + size]))
    return out


def streamed_arguments(data: bytes) -> str:
    arguments = ""
    for event in parse_events(data):
        if isinstance(event, dict):
            for call in event["choices"][0]["delta"].get("tool_calls") or []:
                arguments += call["function"].get("arguments") or ""
    return arguments


@pytest.mark.parametrize("size", [1, 2, 10])
def test_tool_call_deltas_pass_the_output_guard_byte_identical(size: int) -> None:
    guard = ChatCompletions().output_guard(runtime(*OUTPUT_RULES))
    assert guard is not None
    events = tool_stream()
    assert run(guard, events, size) == b"".join(events)
    assert not guard.ended


def test_text_before_a_call_is_guarded_and_the_arguments_left_alone() -> None:
    guard = ChatCompletions().output_guard(runtime(*OUTPUT_RULES))
    assert guard is not None
    out = run(guard, tool_stream("Mailing x@y.com now"), 1)
    assert streamed_arguments(out) == "".join(ARGUMENTS)
    text = "".join(
        event["choices"][0]["delta"].get("content") or ""
        for event in parse_events(out)
        if isinstance(event, dict)
    )
    assert text == "Mailing [REDACTED:EMAIL] now"


def function_call_events() -> list[bytes]:
    """A Responses stream's function-call events, as vLLM 0.32 sends them."""
    item = {
        "arguments": "",
        "call_id": "call_1",
        "name": "send_mail",
        "type": "function_call",
        "id": "fc_1",
        "status": "in_progress",
    }
    where = {"item_id": "fc_1", "output_index": 0}
    events: list[dict[str, Any]] = [
        {"item": item, "output_index": 0, "type": "response.output_item.added"},
        *(
            {**where, "delta": piece, "type": "response.function_call_arguments.delta"}
            for piece in ARGUMENTS
        ),
        {
            **where,
            "arguments": "".join(ARGUMENTS),
            "name": "send_mail",
            "type": "response.function_call_arguments.done",
        },
    ]
    return [
        b"event: "
        + event["type"].encode()
        + b"\ndata: "
        + orjson.dumps({**event, "sequence_number": number})
        + b"\n\n"
        for number, event in enumerate(events, 2)
    ]


def test_function_call_events_pass_the_responses_guard_untouched() -> None:
    guard = Responses().output_guard(runtime(*OUTPUT_RULES))
    assert guard is not None
    events = function_call_events()
    assert run(guard, events, 1) == b"".join(events)


async def test_a_guarded_tool_call_stream_reaches_the_client_byte_identical(
    tmp_path: Path,
) -> None:
    events = tool_stream()

    async def calls(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
        usage_chunk = sse({"id": "chatcmpl-1", "model": "base", "choices": [], "usage": usage})
        chunks = [*events[:-1], *usage_chunk]
        return MemoryResponse(200, chunks=chunks, content_type="text/event-stream")

    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = calls
    policies = {"guarded": {"rules": list(OUTPUT_RULES)}}
    async with in_process_gateway(fake, tmp_path, safety={"policies": policies}) as (client, _):
        headers = await new_key(client, {"base": {"base_model": "base"}}, policy="guarded")
        body = {**CALL_REQUIRED, "stream": True}
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200
    assert response.content == b"".join(events)
    assert json.loads(fake.inference_requests[0].body or b"")["tools"] == TOOLS


# --- a gateway process in front of the stand-in ------------------------------------------


def test_the_stand_in_refuses_as_vllm_and_the_gateway_explains(
    standin: ServerProcess, gateway: Gateway
) -> None:
    body = {
        "model": "base",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "send_mail"}},
        "max_tokens": 4,
    }
    direct = httpx.post(standin.url + "/v1/chat/completions", json=body, timeout=10)
    assert direct.status_code == 400
    assert direct.json()["error"]["message"] == (
        'tool_choice=function "send_mail" requires --tool-call-parser to be set'
    )
    url = gateway.url + "/v1/chat/completions"
    for choice in ("required", "auto", body["tool_choice"]):
        proxied = httpx.post(
            url, json={**body, "tool_choice": choice}, headers=gateway.headers, timeout=10
        )
        assert proxied.status_code == 400
        assert proxied.json()["error"]["message"] == NOT_ENABLED
    plain = {**body, "tool_choice": "none"}
    assert httpx.post(url, json=plain, headers=gateway.headers, timeout=10).status_code == 200
