"""The Responses API surface: the codec (parse, texts, estimate, usage, stream end, errors),
its output guard on split deltas and blocks, the pipeline end to end in this process, and the
openai SDK through a gateway process in front of the stand-in."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.lib.streaming.responses import ResponseStreamManager
from openai.types.responses import ResponseErrorEvent, ResponseTextDeltaEvent

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, UpstreamBadGateway
from gateway.core.request import InferenceRequest
from gateway.limits.estimate import MAX_TOKENS, text_tokens
from gateway.safety.runtime import PolicyRuntime
from gateway.safety.text_guard import TextGuard
from gateway.settings import LimitsSettings
from gateway.surfaces.responses import Responses, ResponsesUsage, chat_usage
from gateway.surfaces.responses_guard import PartKey, ResponsesGuard
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import ADMIN_KEY, Gateway
from tests.fixtures.in_process import FakeVllm, in_process_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults
from tests.gateway.safety.helpers import rule, runtime

SURFACE = Responses()
DEFAULT_MAX_TOKENS = LimitsSettings().default_max_tokens
RESPONSE_ID = "resp_1"
ITEM_ID = "msg_1"
USAGE = {
    "input_tokens": 21,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens": 8,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 29,
}
CHAT_USAGE = {
    "prompt_tokens": 21,
    "completion_tokens": 8,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 3},
}
MAILS = rule("mails", "email", "redact", "output")
FRUIT = rule("fruit", "deny_terms", "block", "output", terms=["forbidden fruit"])
DELTA = "response.output_text.delta"


# --- vLLM-shaped answers ----------------------------------------------------------------


def frame(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def response_object(
    status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None, model: str = "base"
) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "created_at": 1,
        "incomplete_details": None,
        "instructions": None,
        "model": model,
        "object": "response",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "none",
        "tools": [],
        "status": status,
        "usage": usage,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": None}


def message(text: str, item_id: str = ITEM_ID) -> dict[str, Any]:
    return {
        "id": item_id,
        "content": [text_part(text)],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    }


def function_call(arguments: str) -> dict[str, Any]:
    return {
        "arguments": arguments,
        "call_id": "call_1",
        "name": "send_mail",
        "type": "function_call",
        "id": "fc_1",
        "status": "completed",
    }


def text_events(pieces: list[str], output_index: int = 0) -> list[dict[str, Any]]:
    """The events of one message item, as vLLM streams it (without sequence numbers)."""
    text = "".join(pieces)
    item_id = f"msg_{output_index + 1}"
    where = {"content_index": 0, "item_id": item_id, "output_index": output_index}
    added = {**message("", item_id), "content": [], "status": "in_progress"}
    return [
        {"item": added, "output_index": output_index, "type": "response.output_item.added"},
        {**where, "part": {**text_part(""), "logprobs": []}, "type": "response.content_part.added"},
        *({**where, "delta": piece, "logprobs": [], "type": DELTA} for piece in pieces),
        {**where, "logprobs": [], "text": text, "type": "response.output_text.done"},
        {**where, "part": text_part(text), "type": "response.content_part.done"},
        {
            "item": message(text, item_id),
            "output_index": output_index,
            "type": "response.output_item.done",
        },
    ]


def numbered(events: list[dict[str, Any]]) -> list[bytes]:
    return [frame({**event, "sequence_number": number}) for number, event in enumerate(events)]


def vllm_stream(
    pieces: list[str], model: str = "base", items: list[dict[str, Any]] | None = None
) -> list[bytes]:
    """A whole stream of one text answer (or of `items`' events), ended by response.completed."""
    started = response_object("in_progress", [], None, model)
    body = text_events(pieces) if items is None else items
    output = [event["item"] for event in body if event["type"] == "response.output_item.done"]
    return numbered(
        [
            {"response": started, "type": "response.created"},
            {"response": started, "type": "response.in_progress"},
            *body,
            {
                "response": response_object("completed", output, USAGE, model),
                "type": "response.completed",
            },
        ]
    )


def parse_stream(data: bytes) -> list[dict[str, Any]]:
    """The events of a Responses stream; fails on broken framing or a type mismatch."""
    assert data.endswith(b"\n\n"), data[-200:]
    events = []
    for raw in data.split(b"\n\n")[:-1]:
        head, _, payload = raw.partition(b"\ndata: ")
        assert head.startswith(b"event: "), raw
        event = orjson.loads(payload)
        assert event["type"] == head[7:].decode()
        events.append(event)
    return events


def streamed_text(events: list[dict[str, Any]], output_index: int = 0) -> str:
    return "".join(
        event["delta"]
        for event in events
        if event["type"] == DELTA and event["output_index"] == output_index
    )


def output_texts(response: dict[str, Any]) -> list[str]:
    return [part["text"] for item in response["output"] for part in item.get("content", [])]


def request(body: dict[str, Any]) -> InferenceRequest:
    return SURFACE.parse(orjson.dumps(body))


def rejected(raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        SURFACE.parse(raw)
    assert caught.value.status == 400
    return caught.value


# --- the codec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "base"}, "input"),
        ({"input": 3}, "input"),
        ({"input": {"role": "user"}}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        (
            {"input": [{"role": "user", "content": "a"}, {"role": 1, "content": "b"}]},
            "input[1].role",
        ),
        ({"input": "hi", "model": 3}, "model"),
        ({"input": "hi", "stream": "yes"}, "stream"),
        ({"input": "hi", "instructions": ["be brief"]}, "instructions"),
        ({"input": "hi", "max_output_tokens": "10"}, "max_output_tokens"),
        ({"input": "hi", "max_output_tokens": True}, "max_output_tokens"),
        ({"input": "hi", "max_output_tokens": 1.5}, "max_output_tokens"),
    ],
)
def test_bad_fields_name_their_param(body: dict[str, Any], param: str) -> None:
    assert rejected(orjson.dumps(body)).param == param


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"", b"null"])
def test_malformed_bodies_are_400(raw: bytes) -> None:
    rejected(raw)


def test_valid_requests_are_read_and_forwarded_as_they_came() -> None:
    raw = orjson.dumps({"model": "base", "input": "hi", "stream": True, "instructions": None})
    parsed = SURFACE.parse(raw)
    assert (parsed.model, parsed.stream) == ("base", True)
    assert SURFACE.upstream_body(parsed, None) is raw
    assert SURFACE.upstream_body(parsed, "base") is raw
    items = request({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]})
    assert (items.model, items.stream) == (None, False)


def test_the_upstream_body_renames_the_model_and_asks_for_nothing_more() -> None:
    parsed = request({"model": "assistant", "input": "hi", "stream": True})
    sent = orjson.loads(SURFACE.upstream_body(parsed, "base"))
    assert sent == {"model": "base", "input": "hi", "stream": True}  # no stream_options


def test_texts_are_the_instructions_and_every_input_text_with_its_role() -> None:
    parsed = request(
        {
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use French."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Bonjour"},
                        {"type": "input_image", "image_url": "https://x/y.png"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "Salut"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "42"},
            ],
        }
    )
    texts = SURFACE.texts(parsed)
    assert (texts.param, texts.messages, texts.unreadable) == ("input", 6, False)
    assert [(slot.role, slot.param, slot.text) for slot in texts.slots] == [
        ("system", "instructions", "Be brief."),
        ("developer", "input[0].content", "Use French."),
        ("user", "input[1].content[0].text", "Bonjour"),
        ("assistant", "input[2].content[0].text", "Salut"),
        ("tool", "input[4].output", "42"),
    ]


def test_a_rewritten_text_lands_in_the_body_vllm_gets() -> None:
    parsed = request(
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"}]}]}
    )
    string = request({"input": "my mail is a@b.com", "instructions": "hi"})
    SURFACE.texts(parsed).slots[0].text = "[EMAIL_1]"
    for slot in SURFACE.texts(string).slots:
        slot.text = slot.text.upper()
    parsed.changed = string.changed = True
    assert orjson.loads(SURFACE.upstream_body(parsed, None))["input"][0]["content"][0] == {
        "type": "input_text",
        "text": "[EMAIL_1]",
    }
    assert orjson.loads(SURFACE.upstream_body(string, None)) == {
        "input": "MY MAIL IS A@B.COM",
        "instructions": "HI",
    }


def test_the_estimate_counts_texts_items_and_the_output_bound() -> None:
    plain = request({"input": "hello world"})  # 11 characters: 3 tokens, one message
    assert SURFACE.estimate_prompt_tokens(plain) == 4 + 3 + 3
    assert SURFACE.estimate_tokens(plain, DEFAULT_MAX_TOKENS) == 10 + DEFAULT_MAX_TOKENS
    bounded = request(
        {"input": "hello world", "instructions": "Be brief.", "max_output_tokens": 50}
    )
    assert SURFACE.estimate_prompt_tokens(bounded) == 2 * 4 + 3 + 5  # 20 characters
    assert SURFACE.estimate_tokens(bounded, DEFAULT_MAX_TOKENS) == 16 + 50
    call = {"type": "function_call_output", "call_id": "c", "output": "x" * 100}
    items = request(
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "abcd"}]}, call]}
    )
    # a message's text parts by length, an item without content by its JSON
    assert SURFACE.estimate_prompt_tokens(items) == 2 * 4 + 3 + text_tokens(
        4 + len(orjson.dumps(call))
    )
    huge = request({"input": "x", "max_output_tokens": 10**15})
    assert SURFACE.estimate_tokens(huge, DEFAULT_MAX_TOKENS) == MAX_TOKENS
    assert SURFACE.estimate_tokens(request({"input": "x", "max_output_tokens": -5}), 7) == 8
    tools = [{"type": "function", "name": "f", "parameters": {}}]
    with_tools = request({"input": "x", "tools": tools})
    assert SURFACE.estimate_prompt_tokens(with_tools) == 4 + 3 + text_tokens(
        1 + len(orjson.dumps(tools))
    )


def test_usage_is_normalised_to_the_chat_shape() -> None:
    assert chat_usage(USAGE) == CHAT_USAGE
    assert chat_usage({"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}) == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
    }


def test_the_usage_of_a_whole_answer_is_recorded_and_the_body_left_alone() -> None:
    ctx = RequestContext("r")
    body = orjson.dumps(response_object("completed", [message("hi")], USAGE))
    assert ResponsesUsage(ctx).on_whole(body) is body
    assert ctx.usage == CHAT_USAGE


@pytest.mark.parametrize("end", ["response.completed", "response.incomplete", "response.failed"])
def test_the_usage_of_a_stream_comes_from_its_last_event(end: str) -> None:
    ctx = RequestContext("r")
    usage = ResponsesUsage(ctx)
    events = vllm_stream(["Hel", "lo"])
    events[-1] = events[-1].replace(b"response.completed", end.encode())
    for event in events[:2]:  # created and in_progress carry "usage": null
        assert usage.on_events(event) is event
    assert ctx.usage is None
    rest = b"".join(events[2:])
    assert usage.on_events(rest) is rest
    assert ctx.usage == CHAT_USAGE


def test_the_stream_ends_with_its_terminal_event() -> None:
    events = vllm_stream(["Hi"])
    assert SURFACE.stream_finished(events[-1])
    assert SURFACE.stream_finished(b"".join(events))
    assert not SURFACE.stream_finished(b"".join(events[:-1]))
    for end in (b"response.incomplete", b"response.failed"):
        assert SURFACE.stream_finished(events[-2] + events[-1].replace(b"response.completed", end))
    assert not SURFACE.stream_finished(b"")
    assert not SURFACE.stream_finished(SURFACE.stream_error(UpstreamBadGateway("cut")))


def test_a_broken_stream_ends_with_a_responses_error_event() -> None:
    data = SURFACE.stream_error(UpstreamBadGateway("the stream ended before its end event"))
    assert data.startswith(b"event: error\ndata: {")
    [event] = parse_stream(data)
    parsed = ResponseErrorEvent.model_validate(event)
    assert (parsed.type, parsed.code, parsed.param) == ("error", "bad_gateway", None)
    assert parsed.message == "The model server failed: the stream ended before its end event"
    # the error object too: the openai SDK raises APIError only for data with an "error" key
    assert event["error"] == {
        "message": parsed.message,
        "type": "upstream_error",
        "param": None,
        "code": "bad_gateway",
    }


def test_errors_are_in_openais_format() -> None:
    error = GatewayError(400, "bad", param="input")
    assert SURFACE.error_response(error) == (400, error.body())
    assert SURFACE.tenant_fields


# --- the output guard ------------------------------------------------------------------


def responses_guard(*rules: dict[str, Any]) -> ResponsesGuard:
    guard = SURFACE.output_guard(runtime(*rules))
    assert isinstance(guard, ResponsesGuard)
    return guard


def run_stream(guard: ResponsesGuard, events: list[bytes], reads: list[int] | None = None) -> bytes:
    """Feed `events` in reads of the given sizes (default: one event per read), as the relay
    does: it stops once the filter has ended the stream."""
    sizes = reads or [1] * len(events)
    out, at = b"", 0
    for size in sizes:
        out += guard.on_events(b"".join(events[at : at + size]))
        at += size
        if guard.ended:
            break
    return out


def assert_well_numbered(events: list[dict[str, Any]]) -> None:
    assert [event["sequence_number"] for event in events] == list(range(len(events)))


ANSWER = "Mail bob.smith@example.com or ann@example.org, then wait."
REDACTED = "Mail [REDACTED:EMAIL] or [REDACTED:EMAIL], then wait."


def test_no_output_rules_need_no_guard() -> None:
    assert SURFACE.output_guard(runtime(rule("in", "email", "mask", "input"))) is None


def test_a_split_at_every_position_gives_the_whole_answers_redaction() -> None:
    for cut in range(1, len(ANSWER)):
        events = parse_stream(
            run_stream(responses_guard(MAILS), vllm_stream([ANSWER[:cut], ANSWER[cut:]]))
        )
        assert streamed_text(events) == REDACTED, cut
        assert_well_numbered(events)
        by_type = {event["type"]: event for event in events}
        assert by_type["response.output_text.done"]["text"] == REDACTED
        assert by_type["response.content_part.done"]["part"]["text"] == REDACTED
        assert output_texts({"output": [by_type["response.output_item.done"]["item"]]}) == [
            REDACTED
        ]
        completed = events[-1]
        assert completed["type"] == "response.completed"
        assert output_texts(completed["response"]) == [REDACTED]
        assert completed["response"]["status"] == "completed"


def test_random_pieces_and_reads_give_the_whole_answers_redaction() -> None:
    rng = random.Random(11)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(1, 20)))
        pieces = [ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        events = vllm_stream(pieces)
        reads: list[int] = []
        while sum(reads) < len(events):
            reads.append(rng.randint(1, 5))
        parsed = parse_stream(run_stream(responses_guard(MAILS), events, reads))
        assert streamed_text(parsed) == REDACTED
        assert output_texts(parsed[-1]["response"]) == [REDACTED]
        assert_well_numbered(parsed)


def test_a_block_ends_the_stream_with_an_incomplete_response() -> None:
    text = "Sure. The forbidden fruit recipe starts with apples."
    for cut in range(1, len(text)):
        guard = responses_guard(FRUIT)
        events = parse_stream(run_stream(guard, vllm_stream([text[:cut], text[cut:]])))
        assert guard.ended
        assert streamed_text(events) == "Sure. The ", cut
        assert_well_numbered(events)
        last = events[-1]
        assert [event["type"] for event in events].count("response.incomplete") == 1
        assert last["type"] == "response.incomplete"
        response = last["response"]
        assert (response["id"], response["model"]) == (RESPONSE_ID, "base")
        assert response["status"] == "incomplete"
        assert response["incomplete_details"] == {"reason": "content_filter"}
        assert output_texts(response) == ["Sure. The "]
        assert response["output"][0]["status"] == "incomplete"
        assert response["output"][0]["id"] == "msg_1"
        assert all(event["type"] != "response.completed" for event in events)
        assert guard.on_events(vllm_stream([" more"])[2]) == b""


def test_a_block_found_at_the_texts_end_still_ends_the_stream() -> None:
    guard = responses_guard(FRUIT)
    events = parse_stream(run_stream(guard, vllm_stream(["a forbidden", " fruit"])))
    assert streamed_text(events) == "a "
    assert events[-1]["type"] == "response.incomplete"
    assert [event["type"] for event in events].count("response.output_text.done") == 0


def test_events_that_need_nothing_leave_as_the_same_bytes() -> None:
    guard = responses_guard(rule("cards", "payment_card", "redact", "output"))
    events = vllm_stream(["Hello", " there", ", how", " are you?"])
    assert run_stream(guard, events) == b"".join(events)
    together = responses_guard(rule("cards", "payment_card", "redact", "output"))
    assert together.on_events(b"".join(events)) == b"".join(events)  # one run of deltas


class FeedLog(TextGuard[PartKey]):
    """The policy's output rules, noting every text fed to them."""

    def __init__(self, policy: PolicyRuntime) -> None:
        rules = policy.policy.output_rules
        assert rules is not None
        super().__init__(rules, policy.vault, policy)
        self.fed: list[str] = []

    def feed(self, index: PartKey, text: str, final: bool = False) -> tuple[str, bool]:
        self.fed.append(text)
        return super().feed(index, text, final)


def test_the_deltas_of_a_text_that_arrive_together_are_scanned_as_one_text() -> None:
    pieces = ["Mail bob", ".smith@", "example.com", " or ann@", "example.org", ", then wait."]
    log = FeedLog(runtime(MAILS))
    events = parse_stream(ResponsesGuard(log).on_events(b"".join(vllm_stream(pieces))))
    assert [text for text in log.fed if text] == [ANSWER]  # one scan for all the deltas
    deltas = [event["delta"] for event in events if event["type"] == DELTA]
    # each delta still leaves as one event, and the held last word as one more at the end
    assert len(deltas) == len(pieces) + 1
    assert "".join(deltas) == REDACTED
    assert output_texts(events[-1]["response"]) == [REDACTED]
    assert_well_numbered(events)


def test_comments_and_unknown_events_pass_through() -> None:
    guard = responses_guard(MAILS)
    odd = b': keep-alive\n\ndata: [DONE]\n\nevent: error\ndata: {"type":"error"}\n\n'
    assert guard.on_events(odd) == odd


def test_masked_values_come_back_in_deltas_and_final_texts() -> None:
    answer = "Write to [EMAIL_1] soon."
    for cut in range(1, len(answer)):
        policy = runtime(rule("mask-mail", "email", "mask", "input"))
        policy.vault.placeholder("EMAIL", "ann@example.com")
        guard = SURFACE.output_guard(policy)
        assert isinstance(guard, ResponsesGuard)
        events = parse_stream(run_stream(guard, vllm_stream([answer[:cut], answer[cut:]])))
        assert streamed_text(events) == "Write to ann@example.com soon.", cut
        assert output_texts(events[-1]["response"]) == ["Write to ann@example.com soon."]


def test_function_call_arguments_are_never_rewritten() -> None:
    arguments = '{"to": "a@b.com"}'
    call = function_call(arguments)
    where = {"item_id": "fc_1", "output_index": 1}
    items = [
        *text_events(["I will mail a@b.com"]),
        {
            "item": {**call, "arguments": "", "status": "in_progress"},
            "output_index": 1,
            "type": "response.output_item.added",
        },
        {**where, "delta": arguments[:9], "type": "response.function_call_arguments.delta"},
        {**where, "delta": arguments[9:], "type": "response.function_call_arguments.delta"},
        {
            **where,
            "arguments": arguments,
            "name": "send_mail",
            "type": "response.function_call_arguments.done",
        },
        {"item": call, "output_index": 1, "type": "response.output_item.done"},
    ]
    events = parse_stream(run_stream(responses_guard(MAILS), vllm_stream([], items=items)))
    assert streamed_text(events) == "I will mail [REDACTED:EMAIL]"
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == arguments
    assert events[-1]["response"]["output"][1]["arguments"] == arguments
    assert_well_numbered(events)


def test_texts_of_several_items_are_scanned_apart() -> None:
    items = [*text_events(["first a@", "b.com"]), *text_events(["second c@", "d.org"], 1)]
    events = parse_stream(run_stream(responses_guard(MAILS), vllm_stream([], items=items)))
    assert streamed_text(events, 0) == "first [REDACTED:EMAIL]"
    assert streamed_text(events, 1) == "second [REDACTED:EMAIL]"
    assert output_texts(events[-1]["response"]) == [
        "first [REDACTED:EMAIL]",
        "second [REDACTED:EMAIL]",
    ]
    assert_well_numbered(events)


def test_a_block_in_a_later_item_keeps_the_finished_ones() -> None:
    items = [*text_events(["all good"]), *text_events(["the forbidden fruit"], 1)]
    events = parse_stream(run_stream(responses_guard(FRUIT), vllm_stream([], items=items)))
    response = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert output_texts(response) == ["all good", "the "]
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]


def test_a_text_held_when_the_stream_ends_is_released_before_the_end() -> None:
    events = vllm_stream(["reach me at x@y.com"])
    events = [events[0], events[2], events[3], events[4], events[-1]]  # no .done events
    parsed = parse_stream(run_stream(responses_guard(MAILS), events))
    assert streamed_text(parsed) == "reach me at [REDACTED:EMAIL]"
    assert parsed[-1]["type"] == "response.completed"


def test_a_whole_answer_is_redacted() -> None:
    body = orjson.dumps(
        response_object("completed", [message(ANSWER), function_call('{"to": "a@b.com"}')], USAGE)
    )
    answer = orjson.loads(responses_guard(MAILS).on_whole(body))
    assert output_texts(answer) == [REDACTED]
    assert answer["output"][1]["arguments"] == '{"to": "a@b.com"}'
    assert answer["status"] == "completed"


def test_a_blocked_whole_answer_is_cut_at_the_match_and_incomplete() -> None:
    output = [message("fine"), message("Sure. The Forbidden Fruit is here."), function_call("{}")]
    answer = orjson.loads(
        responses_guard(FRUIT).on_whole(orjson.dumps(response_object("completed", output, USAGE)))
    )
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "content_filter"}
    assert output_texts(answer) == ["fine", "Sure. The "]
    assert [item["status"] for item in answer["output"]] == ["completed", "incomplete"]
    assert answer["usage"] == USAGE


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"object": "response"}'])
def test_whole_bodies_without_output_pass_through(body: bytes) -> None:
    assert responses_guard(MAILS).on_whole(body) is body


# --- in process: the pipeline end to end -------------------------------------------------

ASSISTANT = {"assistant": {"base_model": "base"}}  # the public name; vLLM's is "base"


def answering(text: str, pieces: list[str] | None = None) -> Any:
    async def handler(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        if body.get("stream"):
            events = vllm_stream(pieces or [text], body["model"])
            return MemoryResponse(200, chunks=events, content_type="text/event-stream")
        answer = response_object("completed", [message(text)], USAGE, body["model"])
        return MemoryResponse(200, orjson.dumps(answer))

    return handler


async def new_key(
    client: httpx.AsyncClient,
    models: dict[str, dict[str, str]],
    policy: str | None = None,
    limits: dict[str, int] | None = None,
) -> dict[str, str]:
    """A tenant of its own with `models` and `policy`, and a key with `limits`: its headers."""
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    tenant = await client.post(
        "/admin/v1/tenants",
        json={"name": f"t-{uuid.uuid4().hex[:8]}", "models": models, "safety_policy": policy},
        headers=admin,
    )
    assert tenant.status_code == 201, tenant.text
    key = await client.post(
        "/admin/v1/keys",
        json={"tenant_id": tenant.json()["id"], "name": "k", "limits": limits or {}},
        headers=admin,
    )
    assert key.status_code == 201, key.text
    return {"authorization": f"Bearer {key.json()['secret']}"}


async def test_a_whole_answer_is_renamed_and_vllm_gets_its_own_name(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/responses"] = answering("Hello")
    async with in_process_gateway(fake, tmp_path, ASSISTANT) as (client, key):
        body = {"model": "assistant", "input": "hi", "cache_salt": "mine", "priority": -10}
        response = await client.post(
            "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "assistant"
    assert response.json()["usage"] == USAGE  # the client's shape, untouched
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert fake.inference_requests[0].url.endswith("/v1/responses")
    assert sent["model"] == "base"
    assert sent["cache_salt"] != "mine" and len(sent["cache_salt"]) == 64  # the tenant's salt
    assert "priority" not in sent and "stream_options" not in sent


async def test_every_event_that_carries_the_response_is_renamed(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/responses"] = answering("Hello there", ["Hello", " there"])
    async with in_process_gateway(fake, tmp_path, ASSISTANT) as (client, key):
        body = {"model": "assistant", "input": "hi", "stream": True}
        response = await client.post(
            "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = parse_stream(response.content)
    carriers = [event for event in events if "response" in event]
    assert [event["type"] for event in carriers] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert {event["response"]["model"] for event in carriers} == {"assistant"}
    assert streamed_text(events) == "Hello there"
    assert b'"base"' not in response.content


@pytest.mark.parametrize("stream", [False, True])
async def test_the_usage_reaches_the_limiter(tmp_path: Path, stream: bool) -> None:
    fake = FakeVllm()
    fake.routes["/v1/responses"] = answering("Hello there", ["Hello", " there"])
    limit = 100_000
    async with in_process_gateway(fake, tmp_path, ASSISTANT) as (client, _):
        headers = await new_key(client, ASSISTANT, limits={"tokens_per_minute": limit})
        body = {"model": "assistant", "input": "hi", "max_output_tokens": 300, "stream": stream}
        first = await client.post("/v1/responses", json=body, headers=headers)
        second = await client.post("/v1/responses", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    estimate = SURFACE.estimate_tokens(request(body), DEFAULT_MAX_TOKENS)
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == limit - estimate
    # the first request's reservation was replaced by its real usage (29 tokens)
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == limit - 29 - estimate


async def test_a_blocked_stream_ends_incomplete_and_stops_vllm(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/responses"] = answering("", ["Sure. The forbidden", " fruit is", " sweet."])
    policies = {"no-fruit": {"rules": [FRUIT]}}
    async with in_process_gateway(fake, tmp_path, ASSISTANT, safety={"policies": policies}) as (
        client,
        _,
    ):
        headers = await new_key(client, ASSISTANT, policy="no-fruit")
        body = {"model": "assistant", "input": "hi", "stream": True}
        response = await client.post("/v1/responses", json=body, headers=headers)
        whole = await client.post("/v1/responses", json={**body, "stream": False}, headers=headers)
    events = parse_stream(response.content)
    assert streamed_text(events) == "Sure. The "
    last = events[-1]
    assert last["type"] == "response.incomplete"  # and no error event after it
    assert last["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert last["response"]["model"] == "assistant"
    assert_well_numbered(events)
    assert whole.status_code == 200 and whole.json()["status"] == "completed"  # "" is fine


async def test_a_stream_cut_before_its_end_gets_an_error_event(tmp_path: Path) -> None:
    async def cut(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        return MemoryResponse(
            200, chunks=vllm_stream(["Hel", "lo"])[:5], content_type="text/event-stream"
        )

    fake = FakeVllm()
    fake.routes["/v1/responses"] = cut
    async with in_process_gateway(fake, tmp_path) as (client, key):
        body = {"model": "base", "input": "hi", "stream": True}
        response = await client.post(
            "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}
        )
    last = parse_stream(response.content)[-1]
    assert (last["type"], last["code"]) == ("error", "bad_gateway")


async def test_bad_requests_and_upstream_errors_keep_the_openai_error_shape(tmp_path: Path) -> None:
    async def refused(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        error = {"message": "bad input", "type": "BadRequestError", "param": "input", "code": 400}
        return MemoryResponse(400, orjson.dumps({"error": error}))

    fake = FakeVllm()
    fake.routes["/v1/responses"] = refused
    async with in_process_gateway(fake, tmp_path) as (client, key):
        headers = {"authorization": f"Bearer {key}"}
        missing = await client.post("/v1/responses", json={"model": "base"}, headers=headers)
        relayed = await client.post(
            "/v1/responses", json={"model": "base", "input": "x"}, headers=headers
        )
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "input"
    assert relayed.status_code == 400
    assert relayed.json()["error"]["message"] == "bad input"


# --- a gateway process in front of the stand-in, through the openai SDK --------------------


def sdk(gateway: Gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=key or gateway.api_key, max_retries=0
    )


def test_the_sdk_gets_whole_and_streamed_responses(gateway: Gateway) -> None:
    client = sdk(gateway)
    whole = client.responses.create(model="tenant-a", input="tell me", max_output_tokens=12)
    assert whole.model == "tenant-a" and whole.output_text
    assert whole.usage is not None and whole.usage.output_tokens > 0
    with client.responses.stream(model="tenant-a", input="tell me", max_output_tokens=12) as stream:
        deltas = [event.delta for event in stream if isinstance(event, ResponseTextDeltaEvent)]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == whole.output_text
    assert final.model == "tenant-a"
    assert final.usage == whole.usage


def test_a_cut_stream_raises_in_the_sdk(gateway: Gateway, standin: ServerProcess) -> None:
    set_faults(standin, cut_after_chunks=3)
    stream = sdk(gateway).responses.create(model="base", input="hi", stream=True)
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert "The model server failed" in caught.value.message


def key_blocking(gateway: Gateway, term: str) -> str:
    """A key of a new tenant (model `base`) whose policy blocks `term` in answers."""
    name = f"no-term-{uuid.uuid4().hex[:8]}"
    terms = {"name": "t", "detector": "deny_terms", "direction": "output", "terms": [term]}
    stored = gateway.admin("PUT", f"/safety/policies/{name}", json={"rules": [terms]})
    assert stored.status_code in (200, 201), stored.text
    tenant = gateway.admin(
        "POST",
        "/tenants",
        json={"name": name, "models": {"base": {"base_model": "base"}}, "safety_policy": name},
    )
    assert tenant.status_code == 201, tenant.text
    key = gateway.admin("POST", "/keys", json={"tenant_id": tenant.json()["id"], "name": "k"})
    assert key.status_code == 201, key.text
    secret: str = key.json()["secret"]
    return secret


def blocked_text(stream: ResponseStreamManager[None]) -> str:
    """Read a stream the guard blocks through the SDK's stream helper; the text it got."""
    with stream as events:
        seen = list(events)  # the SDK's own checks (ids, order) accept every event
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            events.get_final_response()  # the SDK's helper knows only a completed end
    last = seen[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "content_filter"
    return "".join(event.delta for event in seen if isinstance(event, ResponseTextDeltaEvent))


def test_a_blocked_stream_ends_incomplete_in_the_sdk(gateway: Gateway) -> None:
    words = (
        sdk(gateway)
        .responses.create(model="base", input="a prompt", max_output_tokens=20)
        .output_text.split()
    )
    term = words[3]  # the stand-in answers the same prompt the same way
    blocked = sdk(gateway, key_blocking(gateway, term))
    safe = blocked_text(
        blocked.responses.stream(model="base", input="a prompt", max_output_tokens=20)
    )
    assert safe.split() == words[: words.index(term)]
