"""Anthropic's Messages API: the codec (gateway/surfaces/anthropic.py), its output guard, the
pipeline end to end in this process in front of a fake vLLM, and the anthropic SDK through a
gateway process in front of the stand-in."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from gateway.core.context import RequestContext
from gateway.core.errors import (
    AuthenticationError,
    BadRequest,
    GatewayError,
    NotFoundError,
    PayloadTooLarge,
    StoreUnavailable,
    UpstreamBadGateway,
    UpstreamTimeout,
)
from gateway.core.filters import ChunkFilter
from gateway.core.request import InferenceRequest
from gateway.limits.estimate import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS
from gateway.limits.headers import rate_limit_headers
from gateway.surfaces import ChatCompletions, CountTokens, Messages, Surface
from gateway.surfaces.anthropic import AnthropicUsage
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import ADMIN_KEY, Gateway
from tests.fixtures.in_process import FakeVllm, in_process_gateway
from tests.gateway.safety.helpers import rule, runtime

MESSAGES = Messages()
COUNT = CountTokens()
USER = [{"role": "user", "content": "hello there"}]
SUPPORT_BOT = {"support-bot": {"base_model": "base", "adapter": "tenant-a"}}


def parse(surface: Surface, **body: Any) -> InferenceRequest:
    return surface.parse(orjson.dumps(body))


def refused(surface: Surface, **body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse(surface, **body)
    return caught.value


def event(data: dict[str, Any]) -> bytes:
    """An SSE event as vLLM frames Anthropic's: its type names it."""
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def text_delta(text: str, index: int = 0) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return event({"type": "content_block_delta", "delta": delta, "index": index})


def message_start(model: str = "tenant-a", **usage: int) -> bytes:
    message: dict[str, Any] = {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 0, **usage},
    }
    return event({"type": "message_start", "message": message})


def stream_events(*texts: str, model: str = "tenant-a") -> list[bytes]:
    block = {"type": "text", "text": ""}
    return [
        message_start(model),
        event({"type": "content_block_start", "content_block": block, "index": 0}),
        *[text_delta(text) for text in texts],
        event({"type": "content_block_stop", "index": 0}),
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"input_tokens": 9, "output_tokens": len(texts)},
            }
        ),
        event({"type": "message_stop"}),
    ]


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """The data of each event, checking the framing (`event: <type>` names the data's type)."""
    out = []
    for chunk in raw.split(b"\n\n")[:-1]:
        head, data = chunk.split(b"\n", 1)
        parsed = orjson.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + parsed["type"].encode(), chunk
        out.append(parsed)
    return out


# -- parse -----------------------------------------------------------------------------------


def test_a_message_request_is_read_without_copying_the_bytes() -> None:
    raw = orjson.dumps({"model": "m", "max_tokens": 5, "messages": USER, "stream": True})
    request = MESSAGES.parse(raw)
    assert (request.model, request.stream, request.raw) == ("m", True, raw)
    assert MESSAGES.upstream_body(request, "m") is raw


def test_the_model_may_be_left_to_the_tenants_default() -> None:
    assert parse(MESSAGES, max_tokens=5, messages=USER).model is None


FIVE = {"max_tokens": 5, "messages": USER}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": USER}, "max_tokens: Field required"),
        ({**FIVE, "max_tokens": "5"}, "max_tokens: Input should be a valid integer"),
        ({**FIVE, "max_tokens": True}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 5}, "messages: Field required"),
        ({**FIVE, "messages": "hi"}, "messages: Input should be a valid list"),
        ({**FIVE, "messages": ["hi"]}, "messages.0: Input should be a valid dictionary"),
        ({**FIVE, "messages": [{"content": "hi"}]}, "messages.0.role: Input should be"),
        ({**FIVE, "model": 3}, "model: Input should be a valid string"),
        ({**FIVE, "stream": "yes"}, "stream: Input should be a valid boolean"),
        ({**FIVE, "system": 3}, "system: Input should be a valid string"),
    ],
)
def test_what_the_gateway_reads_is_checked_in_anthropics_words(
    body: dict[str, Any], message: str
) -> None:
    error = refused(MESSAGES, **body)
    assert isinstance(error, BadRequest)
    assert error.message.startswith(message)
    assert error.param == message.split(":")[0]


def test_count_tokens_needs_no_max_tokens_is_never_streamed_and_reserves_no_tokens() -> None:
    request = parse(COUNT, model="m", messages=USER, stream=True)
    assert request.stream is False
    assert COUNT.estimate_tokens(request, 4096) == 0
    assert COUNT.tenant_fields is False and MESSAGES.tenant_fields is True
    assert refused(COUNT, model="m").message == "messages: Field required"


# -- texts, estimate, upstream body ----------------------------------------------------------


def test_texts_are_the_system_prompt_contents_text_blocks_and_tool_results() -> None:
    request = parse(
        MESSAGES,
        max_tokens=5,
        system=[{"type": "text", "text": "be brief"}],
        messages=[
            {"role": "user", "content": "first"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "not text"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "result"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [{"type": "text", "text": "nested"}],
                    },
                    {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                ],
            },
        ],
    )
    texts = MESSAGES.texts(request)
    assert (texts.param, texts.messages) == ("messages", 4)
    assert [(slot.role, slot.param, slot.text) for slot in texts.slots] == [
        ("system", "system[0].text", "be brief"),
        ("user", "messages[0].content", "first"),
        ("assistant", "messages[1].content[0].text", "calling"),
        ("tool", "messages[2].content[0].content", "result"),
        ("tool", "messages[2].content[1].content[0].text", "nested"),
    ]
    for slot in texts.slots:  # writable: a redaction lands in the body vLLM gets
        slot.text = slot.text.upper()
    request.changed = True
    sent = orjson.loads(MESSAGES.upstream_body(request, None))
    assert sent["system"][0]["text"] == "BE BRIEF"
    assert sent["messages"][2]["content"][1]["content"][0]["text"] == "NESTED"
    assert sent["messages"][1]["content"][1]["input"] == {"q": "not text"}


def test_a_string_system_prompt_is_one_text() -> None:
    request = parse(MESSAGES, max_tokens=5, system="be brief", messages=USER)
    texts = MESSAGES.texts(request)
    assert [(slot.role, slot.param) for slot in texts.slots] == [
        ("system", "system"),
        ("user", "messages[0].content"),
    ]
    texts.slots[0].text = "[redacted]"
    assert request.body["system"] == "[redacted]"


def test_the_estimate_is_the_prompt_plus_max_tokens() -> None:
    twelve = [{"role": "user", "content": "y" * 12}]
    request = parse(MESSAGES, max_tokens=100, system="x" * 8, messages=twelve)
    prompt = 2 * MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS + 5  # 20 characters
    assert MESSAGES.estimate_prompt_tokens(request) == prompt
    assert MESSAGES.estimate_tokens(request, 4096) == prompt + 100
    plain = MESSAGES.estimate_prompt_tokens(parse(MESSAGES, **FIVE))
    tools = parse(MESSAGES, **FIVE, tools=[{"name": "f", "input_schema": {}}])
    assert MESSAGES.estimate_prompt_tokens(tools) > plain
    calls = [{"role": "assistant", "content": [{"type": "tool_use", "input": {"q": "x" * 40}}]}]
    assert MESSAGES.estimate_prompt_tokens(parse(MESSAGES, max_tokens=5, messages=calls)) > plain


def test_the_upstream_body_renames_the_model() -> None:
    request = parse(MESSAGES, model="support-bot", max_tokens=5, messages=USER)
    assert orjson.loads(MESSAGES.upstream_body(request, "tenant-a"))["model"] == "tenant-a"
    defaulted = parse(COUNT, messages=USER)
    assert orjson.loads(COUNT.upstream_body(defaulted, "base"))["model"] == "base"


# -- usage -----------------------------------------------------------------------------------


def test_a_streams_split_usage_is_recorded_in_chats_shape() -> None:
    ctx = RequestContext("r")
    usage = AnthropicUsage(ctx)
    start = message_start(cache_read_input_tokens=4, cache_creation_input_tokens=2)
    assert usage.on_events(start + text_delta("hi")) == start + text_delta("hi")
    assert ctx.usage is None  # the output is not known yet: a cut stream is estimated
    delta = {"stop_reason": "end_turn"}
    closing = event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 3}})
    usage.on_events(closing)
    assert ctx.usage == {
        "prompt_tokens": 15,  # Anthropic's input_tokens leaves the cache reads and writes out
        "completion_tokens": 3,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_only_events_that_mention_usage_are_parsed() -> None:
    ctx = RequestContext("r")
    not_json = b"event: ping\ndata: not json\n\n"
    assert AnthropicUsage(ctx).on_events(not_json) == not_json
    assert ctx.usage is None


def test_a_whole_answers_usage_is_recorded() -> None:
    ctx = RequestContext("r")
    body = orjson.dumps({"type": "message", "usage": {"input_tokens": 7, "output_tokens": 2}})
    assert AnthropicUsage(ctx).on_whole(body) is body
    assert ctx.usage == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    count = RequestContext("r")
    AnthropicUsage(count).on_whole(b'{"input_tokens":36}')  # count_tokens: nothing generated
    assert count.usage is None


# -- stream end, errors ----------------------------------------------------------------------


def test_a_stream_is_finished_by_message_stop_or_vllms_error_event() -> None:
    events = b"".join(stream_events("a"))
    assert MESSAGES.stream_finished(events)
    assert MESSAGES.stream_finished(event({"type": "message_stop"}))
    error = {"type": "error", "error": {"type": "internal_error", "message": "x"}}
    assert MESSAGES.stream_finished(text_delta("a") + event(error))
    assert not MESSAGES.stream_finished(text_delta("a"))
    assert not MESSAGES.stream_finished(text_delta('event: message_stop "message_stop"'))
    assert not MESSAGES.stream_finished(b"")


def test_a_broken_stream_ends_with_anthropics_error_event() -> None:
    ending = MESSAGES.stream_error(UpstreamBadGateway("the stream broke off"))
    assert ending.startswith(b"event: error\ndata: ") and ending.endswith(b"\n\n")
    message = "The model server failed: the stream broke off"
    assert events_of(ending) == [
        {"type": "error", "error": {"type": "api_error", "message": message}}
    ]


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (BadRequest("max_tokens: Field required"), 400, "invalid_request_error"),
        (AuthenticationError("no key"), 401, "authentication_error"),
        (GatewayError(403, "no"), 403, "permission_error"),
        (NotFoundError("no model", "model_not_found"), 404, "not_found_error"),
        (GatewayError(405, "no"), 405, "invalid_request_error"),
        (PayloadTooLarge("too big"), 413, "request_too_large"),
        (GatewayError(500, "broken", "server_error"), 500, "api_error"),
        (UpstreamBadGateway("bad"), 502, "api_error"),
        (StoreUnavailable("keys", "timeout"), 529, "overloaded_error"),
        (UpstreamTimeout("slow"), 504, "timeout_error"),
    ],
)
def test_errors_take_anthropics_shape_and_statuses(
    error: GatewayError, status: int, kind: str
) -> None:
    answered, body = MESSAGES.error_response(error)
    assert answered == status
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
    }


def test_vllms_errors_are_rewritten_in_both_of_its_shapes() -> None:
    # its handlers' errors: Anthropic's envelope with OpenAI's types
    envelope = {"type": "error", "error": {"type": "NotFoundError", "message": "no `nope`"}}
    # request validation: OpenAI's shape
    validation = {"error": {"message": "max_tokens missing", "type": "Bad Request", "code": 400}}
    for status, body, message in [
        (404, orjson.dumps(envelope), "no `nope`"),
        (400, orjson.dumps(validation), "max_tokens missing"),
        (404, b'{"detail":"Not Found"}', "The model server answered: Not Found"),
        (502, b"<html>bad gateway</html>", "The model server answered: <html>bad gateway</html>"),
    ]:
        error = MESSAGES.upstream_error(status, body)
        assert (error.status, error.message) == (status, message)


def test_the_limiters_headers_take_anthropics_names_and_reset_times() -> None:
    headers = rate_limit_headers((10, 9, 1.2), (1000, 990, 61.0))
    headers.append((b"retry-after", b"2"))
    before = time.time()
    translated = dict(MESSAGES.limit_headers(headers))
    assert translated[b"anthropic-ratelimit-requests-limit"] == b"10"
    assert translated[b"anthropic-ratelimit-requests-remaining"] == b"9"
    assert translated[b"anthropic-ratelimit-tokens-limit"] == b"1000"
    assert translated[b"anthropic-ratelimit-tokens-remaining"] == b"990"
    assert translated[b"retry-after"] == b"2"
    assert not any(name.startswith(b"x-ratelimit") for name in translated)
    for name, seconds in [(b"requests", 1.2), (b"tokens", 61.0)]:
        value = translated[b"anthropic-ratelimit-" + name + b"-reset"].decode()
        at = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        assert before + seconds <= at <= before + seconds + 2  # rounded up to the second
    assert MESSAGES.limit_headers([]) == []
    assert ChatCompletions().limit_headers(headers) is headers  # OpenAI's surfaces keep them


# -- output guard ----------------------------------------------------------------------------

NO_FRUIT = rule("fruit", "deny_terms", "block", "output", terms=["forbidden fruit"])
CARDS = rule("cards", "payment_card", "redact", "output")
CARD = "4111 1111 1111 1111"


def guard(*rules: dict[str, Any]) -> ChunkFilter:
    made = MESSAGES.output_guard(runtime(*rules))
    assert made is not None
    return made


def test_no_output_rules_no_guard() -> None:
    assert MESSAGES.output_guard(runtime()) is None
    assert COUNT.output_guard(runtime(NO_FRUIT)) is None  # it generates nothing


def test_a_blocked_stream_ends_as_a_refusal_with_the_safe_text() -> None:
    output_guard = guard(NO_FRUIT)
    head, start, *deltas, stop, delta, end = stream_events("the forb", "idden fruit", " is")
    out = output_guard.on_events(head + start + deltas[0])
    out += output_guard.on_events(deltas[1])  # "fruit" may still grow ("fruity"): held
    assert not output_guard.ended
    out += output_guard.on_events(deltas[2] + stop)
    assert output_guard.ended
    assert output_guard.on_events(delta + end) == b""
    events = events_of(out)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "the "
    assert events[-2]["delta"] == {"stop_reason": "refusal", "stop_sequence": None}
    assert events[-2]["usage"] == {"output_tokens": 3}  # what was relayed, about a token each
    ctx = RequestContext("r")
    AnthropicUsage(ctx).on_events(out)  # the usage filter runs after the guard
    assert ctx.usage is not None and ctx.usage["completion_tokens"] == 3


def test_a_redaction_split_across_deltas_is_caught_and_what_is_held_goes_out_at_the_stop() -> None:
    output_guard = guard(CARDS)
    events = stream_events("card ", CARD[:7], CARD[7:], " ok")
    out = b"".join(output_guard.on_events(e) for e in events)
    assert not output_guard.ended
    parsed = events_of(out)
    text = "".join(e["delta"]["text"] for e in parsed if e["type"] == "content_block_delta")
    assert "1111" not in text and text.startswith("card ") and text.endswith(" ok")
    assert [e["type"] for e in parsed][-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_tool_input_is_never_rewritten() -> None:
    output_guard = guard(NO_FRUIT, CARDS)
    delta = {"type": "input_json_delta", "partial_json": '{"q": "forbidden fruit ' + CARD + '"}'}
    tool = event({"type": "content_block_delta", "delta": delta, "index": 1})
    assert output_guard.on_events(tool) == tool
    assert not output_guard.ended


def test_a_whole_answer_is_cut_at_a_block_and_redacted_otherwise() -> None:
    answer: dict[str, Any] = {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "forbidden fruit"}},
            {"type": "text", "text": "eat the forbidden fruit now"},
            {"type": "text", "text": "more"},
        ],
        "model": "m",
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }
    blocked = orjson.loads(guard(NO_FRUIT).on_whole(orjson.dumps(answer)))
    assert blocked["content"][0] == answer["content"][0]
    assert blocked["content"][1:] == [{"type": "text", "text": "eat the "}]
    assert (blocked["stop_reason"], blocked["stop_sequence"]) == ("refusal", None)
    card = {**answer, "content": [{"type": "text", "text": f"pay with {CARD}"}]}
    redacted = orjson.loads(guard(CARDS).on_whole(orjson.dumps(card)))
    assert "1111" not in redacted["content"][0]["text"]
    assert redacted["stop_reason"] == "end_turn"
    clean = orjson.dumps({**answer, "content": [{"type": "text", "text": "fine"}]})
    assert guard(NO_FRUIT).on_whole(clean) is clean


# -- end to end, in this process (tests/fixtures/in_process.py) ------------------------------


async def whole(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    answer = {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello"}],
        "model": body["model"],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 3},
    }
    return MemoryResponse(200, orjson.dumps(answer))


async def streamed(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    events = stream_events("Hel", "lo", model=body["model"])
    return MemoryResponse(200, chunks=events, content_type="text/event-stream")


async def counted(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    answer = {"input_tokens": 12, "context_management": {"original_input_tokens": 12}}
    return MemoryResponse(200, orjson.dumps(answer))


def fake_vllm() -> FakeVllm:
    fake = FakeVllm()
    fake.routes["/v1/messages"] = whole
    fake.routes["/v1/messages/count_tokens"] = counted
    return fake


def ask(model: str = "support-bot", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "messages": USER, **extra}


async def new_key(client: httpx.AsyncClient, limits: dict[str, int], **tenant: Any) -> str:
    """A new tenant (with SUPPORT_BOT and `tenant`'s fields) and a key with `limits`."""
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    name = f"t-{uuid.uuid4().hex[:8]}"
    created = await client.post(
        "/admin/v1/tenants", json={"name": name, "models": SUPPORT_BOT, **tenant}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = await client.post(
        "/admin/v1/keys",
        json={"tenant_id": created.json()["id"], "name": "k", "limits": limits},
        headers=admin,
    )
    assert key.status_code == 201, key.text
    secret: str = key.json()["secret"]
    return secret


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["type"] == "error", body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "message"}
    return error


async def test_x_api_key_a_renamed_answer_its_salt_and_usage_reaching_the_limiter(
    tmp_path: Path,
) -> None:
    fake = fake_vllm()
    async with in_process_gateway(fake, tmp_path, SUPPORT_BOT) as (client, _):
        key = await new_key(client, {"tokens_per_minute": 10_000})
        first = await client.post("/v1/messages", json=ask(), headers={"x-api-key": key})
        body = ask(max_tokens=20)
        second = await client.post("/v1/messages", json=body, headers={"x-api-key": key})
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "support-bot"
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert sent["model"] == "tenant-a"
    assert "cache_salt" in sent  # vLLM's Anthropic route takes it
    # the first reservation (prompt + 50) was settled with the answer's usage (9 + 3)
    estimate = MESSAGES.estimate_tokens(MESSAGES.parse(orjson.dumps(body)), 0)
    remaining = second.headers["anthropic-ratelimit-tokens-remaining"]
    assert int(remaining) == 10_000 - 12 - estimate
    assert second.headers["anthropic-ratelimit-tokens-limit"] == "10000"
    assert second.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert "x-ratelimit-remaining-tokens" not in second.headers


async def test_a_stream_is_renamed_and_its_usage_settled(tmp_path: Path) -> None:
    fake = fake_vllm()
    fake.routes["/v1/messages"] = streamed
    async with in_process_gateway(fake, tmp_path, SUPPORT_BOT) as (client, _):
        key = await new_key(client, {"tokens_per_minute": 10_000})
        headers = {"x-api-key": key}
        response = await client.post("/v1/messages", json=ask(stream=True), headers=headers)
        after = await client.post("/v1/messages/count_tokens", json=ask(), headers=headers)
    assert response.status_code == 200
    events = events_of(response.content)
    assert events[0]["message"]["model"] == "support-bot"
    assert events[-1] == {"type": "message_stop"}
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert (sent["model"], sent["stream"]) == ("tenant-a", True)
    assert "stream_options" not in sent
    # settled with the stream's usage (9 in, 2 out); count_tokens reserves nothing
    assert int(after.headers["anthropic-ratelimit-tokens-remaining"]) == 10_000 - 11


async def test_a_stream_cut_before_message_stop_ends_with_an_error_event(tmp_path: Path) -> None:
    async def cut(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        events = stream_events("Hel")[:3]
        return MemoryResponse(200, chunks=events, content_type="text/event-stream")

    fake = fake_vllm()
    fake.routes["/v1/messages"] = cut
    async with in_process_gateway(fake, tmp_path) as (client, key):
        response = await client.post(
            "/v1/messages", json=ask("tenant-a", stream=True), headers={"x-api-key": key}
        )
    last = events_of(response.content)[-1]
    assert last["type"] == "error"
    assert last["error"]["type"] == "api_error"


async def test_count_tokens_is_relayed_renamed_and_counted_as_a_request(tmp_path: Path) -> None:
    fake = fake_vllm()
    async with in_process_gateway(fake, tmp_path, SUPPORT_BOT) as (client, _):
        key = await new_key(client, {"requests_per_minute": 5, "tokens_per_minute": 1000})
        body = {"model": "support-bot", "messages": USER}
        headers = {"x-api-key": key}
        first = await client.post("/v1/messages/count_tokens", json=body, headers=headers)
        second = await client.post("/v1/messages/count_tokens", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["input_tokens"] == 12
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert sent["model"] == "tenant-a"
    assert "cache_salt" not in sent  # vLLM's count_tokens request has no such field
    assert second.headers["anthropic-ratelimit-requests-remaining"] == "3"
    assert second.headers["anthropic-ratelimit-tokens-remaining"] == "1000"


async def validation_error(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    """vLLM's answer to a body its request model refuses: in OpenAI's shape."""
    error = {"message": "max_tokens must be positive", "type": "Bad Request", "code": 400}
    return MemoryResponse(400, orjson.dumps({"error": error}))


async def test_errors_are_in_anthropics_shape(tmp_path: Path) -> None:
    fake = fake_vllm()
    fake.routes["/v1/messages"] = validation_error
    async with in_process_gateway(fake, tmp_path) as (client, key):
        headers = {"x-api-key": key}
        missing_key = await client.post("/v1/messages", json=ask("base"))
        bad_key = await client.post("/v1/messages", json=ask("base"), headers={"x-api-key": "k"})
        unknown = await client.post("/v1/messages", json=ask("nope"), headers=headers)
        no_max = {"model": "base", "messages": USER}
        invalid = await client.post("/v1/messages", json=no_max, headers=headers)
        relayed = await client.post("/v1/messages", json=ask("base"), headers=headers)
        wrong_method = await client.get("/v1/messages", headers=headers)
    assert missing_key.status_code == 401
    error = error_of(missing_key)
    assert error["type"] == "authentication_error"
    assert "x-api-key" in error["message"] and "Authorization: Bearer" in error["message"]
    assert (bad_key.status_code, error_of(bad_key)["type"]) == (401, "authentication_error")
    assert (unknown.status_code, error_of(unknown)["type"]) == (404, "not_found_error")
    assert (invalid.status_code, error_of(invalid)) == (
        400,
        {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    )
    assert (relayed.status_code, error_of(relayed)) == (
        400,
        {"type": "invalid_request_error", "message": "max_tokens must be positive"},
    )
    assert (wrong_method.status_code, error_of(wrong_method)["type"]) == (
        405,
        "invalid_request_error",
    )


async def test_a_rate_limit_is_a_429_with_anthropics_headers(tmp_path: Path) -> None:
    fake = fake_vllm()
    async with in_process_gateway(fake, tmp_path, SUPPORT_BOT) as (client, _):
        key = await new_key(client, {"requests_per_minute": 1})
        headers = {"x-api-key": key}
        served = await client.post("/v1/messages", json=ask(), headers=headers)
        limited = await client.post("/v1/messages", json=ask(), headers=headers)
    assert served.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert served.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.status_code == 429
    error = error_of(limited)
    assert error["type"] == "rate_limit_error"
    assert "requests per minute" in error["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert not any(name.startswith("x-ratelimit") for name in limited.headers)


async def test_the_output_guard_ends_a_stream_as_a_refusal(tmp_path: Path) -> None:
    async def tempting(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        events = stream_events("the forbidden ", "fruit", " is sweet", model=body["model"])
        return MemoryResponse(200, chunks=events, content_type="text/event-stream")

    fake = fake_vllm()
    fake.routes["/v1/messages"] = tempting
    policies = {"no-fruit": {"rules": [NO_FRUIT]}}
    async with in_process_gateway(fake, tmp_path, SUPPORT_BOT, safety={"policies": policies}) as (
        client,
        _,
    ):
        key = await new_key(client, {}, safety_policy="no-fruit")
        response = await client.post(
            "/v1/messages", json=ask(stream=True), headers={"x-api-key": key}
        )
    events = events_of(response.content)
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "the "
    assert events[0]["message"]["model"] == "support-bot"
    assert events[-2]["delta"]["stop_reason"] == "refusal"
    assert events[-1] == {"type": "message_stop"}


# -- the anthropic SDK through a gateway process in front of the stand-in --------------------


async def test_the_anthropic_sdk_creates_streams_and_counts(gateway: Gateway) -> None:
    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=gateway.api_key, max_retries=0)
    prompt: Any = [{"role": "user", "content": "tell me about rivers"}]
    message = await client.messages.create(
        model="tenant-a", max_tokens=5, system="be brief", messages=prompt
    )
    assert message.model == "tenant-a"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens == 5 and message.stop_reason == "max_tokens"
    async with client.messages.stream(model="tenant-b", max_tokens=4, messages=prompt) as stream:
        streamed = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed and final.content[0].type == "text" and final.content[0].text == streamed
    assert final.usage.output_tokens == 4 and final.model == "tenant-b"
    counted = await client.messages.count_tokens(model="base", messages=prompt)
    assert counted.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await client.messages.create(model="nope", max_tokens=5, messages=prompt)
    assert unknown.value.type == "not_found_error"
    stranger = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sk-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as rejected:
        await stranger.messages.create(model="base", max_tokens=5, messages=prompt)
    assert rejected.value.type == "authentication_error"
    await client.close()
    await stranger.close()
