"""The stand-in's Responses, Anthropic Messages, tokenizer and n > 1 surfaces over real HTTP:
what each answers (test_standin_shapes.py checks their shapes against real vLLM's). One
conversation gets the same prompt size and answer text on every generation surface."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults
from tests.vllm_server.helpers import HELLO, HELLO_PROMPT_TOKENS, chat, post
from tests.vllm_server.vllm_shapes import capture
from vllm_server.standin.text import VOCABULARY

RESPONSES_EVENTS_AROUND_TEXT = (
    ["response.created", "response.in_progress", "response.output_item.added",
     "response.content_part.added"],
    ["response.output_text.done", "response.content_part.done", "response.output_item.done",
     "response.completed"],
)  # fmt: skip
MESSAGES_EVENTS_AROUND_TEXT = (
    ["message_start", "content_block_start"],
    ["content_block_stop", "message_delta", "message_stop"],
)


def answer(server: ServerProcess, path: str, body: dict[str, Any], status: int = 200) -> Any:
    response = post(server, path, body)
    assert response.status_code == status, response.text
    return response.json()


def events(server: ServerProcess, path: str, body: dict[str, Any]) -> list[tuple[str, dict]]:
    """A typed stream's (event type, data), each data's `type` checked against its type."""
    captured = capture(server.url, path, {**body, "stream": True})
    assert captured["status"] == 200, captured
    assert captured["content_type"] == "text/event-stream; charset=utf-8"
    typed = [(event["event"], event["data"]) for event in captured["events"]]
    assert all(name == data["type"] for name, data in typed)
    return typed


def chunks(server: ServerProcess, path: str, body: dict[str, Any]) -> list[dict]:
    """An OpenAI stream's chunks, checked to end with [DONE]."""
    captured = capture(server.url, path, {**body, "stream": True})
    *data, done = [event["data"] for event in captured["events"]]
    assert done == "[DONE]"
    return data


def chat_text(server: ServerProcess, model: str, messages: list[dict], max_tokens: int) -> str:
    body = chat(server, model=model, messages=messages, max_tokens=max_tokens)
    return body["choices"][0]["message"]["content"]


def assert_error(body: dict, err_type: str, param: str | None, message: str) -> None:
    error = body["error"]
    assert (error["type"], error["param"]) == (err_type, param)
    assert message in error["message"]


# /v1/responses


def test_responses_answers_as_chat_does(standin: ServerProcess) -> None:
    body = answer(
        standin,
        "/v1/responses",
        {"model": "tenant-a", "input": "tell me about rivers", "max_output_tokens": 5},
    )
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert (body["model"], body["max_output_tokens"]) == ("tenant-a", 5)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    (item,) = body["output"]
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", "completed")
    (part,) = item["content"]
    assert part["type"] == "output_text"
    assert part["text"] == chat_text(standin, "tenant-a", HELLO, 5)
    assert body["usage"] == {
        "input_tokens": HELLO_PROMPT_TOKENS,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "input_tokens_per_turn": [],
            "cached_tokens_per_turn": [],
        },
        "output_tokens": 5,
        "output_tokens_details": {
            "reasoning_tokens": 0,
            "tool_output_tokens": 0,
            "output_tokens_per_turn": [],
            "tool_output_tokens_per_turn": [],
        },
        "total_tokens": HELLO_PROMPT_TOKENS + 5,
    }


def test_responses_that_end_on_their_own_are_completed(standin: ServerProcess) -> None:
    body = answer(
        standin, "/v1/responses", {"input": "tell me about rivers", "max_output_tokens": 64}
    )
    assert (body["status"], body["incomplete_details"], body["model"]) == (
        "completed",
        None,
        "base",
    )
    assert body["usage"]["output_tokens"] < 64


def test_responses_read_instructions_and_input_items(standin: ServerProcess) -> None:
    items = [
        {"role": "user", "content": "tell me about rivers"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "rivers flow"}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "more please"}]},
    ]
    request = {
        "model": "tenant-b",
        "instructions": "be brief",
        "input": items,
        "max_output_tokens": 4,
        "temperature": 0.5,
        "metadata": {"k": "v"},
    }
    body = answer(standin, "/v1/responses", request)
    assert (body["instructions"], body["metadata"], body["temperature"]) == (
        "be brief",
        {"k": "v"},
        0.5,
    )
    as_chat = [{"role": "system", "content": "be brief"}, *items]
    assert body["output"][0]["content"][0]["text"] == chat_text(standin, "tenant-b", as_chat, 4)
    # 2 for the generation prompt, then 4 per message and 1 per word
    assert body["usage"]["input_tokens"] == 2 + (4 + 2) + (4 + 4) + (4 + 2) + (4 + 2)


def test_responses_stream_events(standin: ServerProcess) -> None:
    request = {"model": "tenant-a", "input": "tell me about rivers", "max_output_tokens": 5}
    whole = answer(standin, "/v1/responses", request)
    stream = events(standin, "/v1/responses", request)
    names = [name for name, _ in stream]
    before, after = RESPONSES_EVENTS_AROUND_TEXT
    assert names == [*before, *["response.output_text.delta"] * 5, *after]
    assert [data["sequence_number"] for _, data in stream] == list(range(len(stream)))
    created, in_progress = stream[0][1]["response"], stream[1][1]["response"]
    assert created == in_progress
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    deltas = "".join(data["delta"] for name, data in stream if name.endswith(".delta"))
    text = whole["output"][0]["content"][0]["text"]
    assert deltas == stream[-4][1]["text"] == text
    assert len({data["item_id"] for _, data in stream[3:-2]}) == 1
    completed = stream[-1][1]["response"]
    assert completed["id"] == created["id"]
    assert (completed["status"], completed["model"]) == ("incomplete", "tenant-a")
    assert completed["usage"] == whole["usage"]
    assert completed["output"][0]["content"][0]["text"] == text


def test_responses_stream_sends_no_delta_for_the_end_of_sequence(standin: ServerProcess) -> None:
    stream = events(standin, "/v1/responses", {"input": "hi", "max_output_tokens": 64})
    completed = stream[-1][1]["response"]
    assert completed["status"] == "completed"
    deltas = [data["delta"] for name, data in stream if name == "response.output_text.delta"]
    assert all(deltas)
    assert len(deltas) == completed["usage"]["output_tokens"] - 1


def test_retrieving_a_response_finds_none(standin: ServerProcess) -> None:
    """vLLM stores no responses unless VLLM_ENABLE_RESPONSES_API_STORE=1."""
    created = answer(standin, "/v1/responses", {"input": "hi", "store": True})
    missing = capture(standin.url, f"/v1/responses/{created['id']}")
    assert missing["status"] == 404
    assert_error(
        missing["body"],
        "invalid_request_error",
        "response_id",
        f"Response with id '{created['id']}' not found.",
    )


@pytest.mark.parametrize(
    ("request_body", "status", "err_type", "param", "message"),
    [
        ({"model": "nope", "input": "hi"}, 404, "NotFoundError", "model",
         "The model `nope` does not exist. Valid aliases: base."),
        ({"input": "hi", "max_output_tokens": 513}, 400, "BadRequestError", "max_output_tokens",
         "max_output_tokens=513 cannot be greater than max_model_len=512"),
        ({"input": "hi", "max_output_tokens": 0}, 400, "BadRequestError", "max_tokens",
         "max_tokens must be at least 1, got 0."),
        ({"input": "x " * 600}, 400, "BadRequestError", "input_tokens",
         "your prompt contains at least 513 input tokens"),
        ({"model": "base"}, 400, "Bad Request", "body.input", "Field required"),
    ],
)  # fmt: skip
def test_responses_errors(
    standin: ServerProcess,
    request_body: dict,
    status: int,
    err_type: str,
    param: str,
    message: str,
) -> None:
    body = answer(standin, "/v1/responses", request_body, status)
    assert body["error"]["code"] == status
    assert_error(body, err_type, param, message)


def test_openai_sdk_reads_responses(standin: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{standin.url}/v1", api_key="unused", max_retries=0)
    whole = client.responses.create(
        model="tenant-b", input="tell me about rivers", max_output_tokens=4
    )
    assert whole.status == "incomplete" and whole.usage is not None
    assert whole.output_text == chat_text(standin, "tenant-b", HELLO, 4)
    with client.responses.stream(
        model="tenant-b", input="tell me about rivers", max_output_tokens=4
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == whole.output_text


# /v1/messages (Anthropic)


def test_messages_answer_as_chat_does(standin: ServerProcess) -> None:
    body = answer(
        standin, "/v1/messages", {"model": "tenant-a", "max_tokens": 5, "messages": HELLO}
    )
    assert body["id"].startswith("chatcmpl-")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "tenant-a")
    assert body["content"] == [{"type": "text", "text": chat_text(standin, "tenant-a", HELLO, 5)}]
    assert body["stop_reason"] == "max_tokens" and "stop_sequence" not in body
    assert body["usage"] == {"input_tokens": HELLO_PROMPT_TOKENS, "output_tokens": 5}
    natural = answer(standin, "/v1/messages", {"max_tokens": 64, "messages": HELLO})
    assert (natural["stop_reason"], natural["model"]) == ("end_turn", "base")


@pytest.mark.parametrize("system", ["be brief", [{"type": "text", "text": "be brief"}]])
def test_messages_system_comes_first(standin: ServerProcess, system: object) -> None:
    body = answer(standin, "/v1/messages", {"max_tokens": 3, "system": system, "messages": HELLO})
    as_chat = [{"role": "system", "content": "be brief"}, *HELLO]
    assert body["content"][0]["text"] == chat_text(standin, "base", as_chat, 3)
    assert body["usage"]["input_tokens"] == HELLO_PROMPT_TOKENS + 4 + 2
    counted = answer(
        standin,
        "/v1/messages/count_tokens",
        {"model": "tenant-b", "system": system, "messages": HELLO},
    )
    assert counted == {
        "input_tokens": HELLO_PROMPT_TOKENS + 4 + 2,
        "context_management": {"original_input_tokens": HELLO_PROMPT_TOKENS + 4 + 2},
    }


def test_messages_stream_events(standin: ServerProcess) -> None:
    request = {"model": "tenant-b", "max_tokens": 5, "messages": HELLO}
    whole = answer(standin, "/v1/messages", request)
    stream = events(standin, "/v1/messages", request)
    before, after = MESSAGES_EVENTS_AROUND_TEXT
    assert [name for name, _ in stream] == [*before, *["content_block_delta"] * 5, *after]
    start = stream[0][1]["message"]
    assert start["id"].startswith("chatcmpl-")
    assert (start["model"], start["content"], start["stop_reason"]) == ("tenant-b", [], None)
    assert start["stop_sequence"] is None
    assert start["usage"] == {"input_tokens": HELLO_PROMPT_TOKENS, "output_tokens": 0}
    deltas = [data["delta"] for name, data in stream if name == "content_block_delta"]
    assert {delta["type"] for delta in deltas} == {"text_delta"}
    assert "".join(delta["text"] for delta in deltas) == whole["content"][0]["text"]
    message_delta = stream[-2][1]
    assert message_delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert message_delta["usage"] == whole["usage"]


@pytest.mark.parametrize(
    ("path", "request_body", "status", "err_type", "message"),
    [
        ("/v1/messages", {"model": "nope", "max_tokens": 5, "messages": HELLO}, 404,
         "NotFoundError", "The model `nope` does not exist. Valid aliases: base."),
        ("/v1/messages/count_tokens", {"model": "nope", "messages": HELLO}, 404,
         "NotFoundError", "The model `nope` does not exist."),
        ("/v1/messages", {"max_tokens": 600, "messages": HELLO}, 400, "BadRequestError",
         "max_completion_tokens=600 cannot be greater than max_model_len=512"),
        ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "x " * 600}]},
         400, "BadRequestError", "your prompt contains at least 513 input tokens"),
    ],
)  # fmt: skip
def test_messages_errors_have_anthropic_shape(
    standin: ServerProcess,
    path: str,
    request_body: dict,
    status: int,
    err_type: str,
    message: str,
) -> None:
    body = answer(standin, path, request_body, status)
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == err_type and message in body["error"]["message"]


def test_messages_injected_failure_has_anthropic_shape(standin: ServerProcess) -> None:
    set_faults(standin, fail_rate=1)
    body = answer(standin, "/v1/messages", {"max_tokens": 5, "messages": HELLO}, 500)
    assert body["type"] == "error" and body["error"]["type"] == "InternalServerError"


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"messages": HELLO}, "body.max_tokens"),
        ({"max_tokens": 0, "messages": HELLO}, "body.max_tokens"),
        ({"max_tokens": "5", "messages": HELLO}, "body.max_tokens"),
        ({"max_tokens": 5}, "body.messages"),
    ],
)
def test_messages_body_errors_keep_the_openai_shape(
    standin: ServerProcess, request_body: dict, param: str
) -> None:
    """FastAPI's validation handler answers before vLLM's Anthropic code."""
    body = answer(standin, "/v1/messages", request_body, 400)
    assert (body["error"]["type"], body["error"]["param"], body["error"]["code"]) == (
        "Bad Request",
        param,
        400,
    )


# /tokenize and /detokenize


def test_tokenize_prompt_pieces(standin: ServerProcess) -> None:
    plain = answer(standin, "/tokenize", {"model": "tenant-a", "prompt": "the river flows"})
    assert (plain["count"], plain["max_model_len"], plain["token_strs"]) == (4, 512, None)
    pieces = answer(standin, "/tokenize", {"prompt": "the river flows", "return_token_strs": True})
    assert pieces["tokens"] == plain["tokens"]
    assert pieces["token_strs"] == ["<s>", "the", "Ġriver", "Ġflows"]
    bare = answer(standin, "/tokenize", {"prompt": "the river flows", "add_special_tokens": False})
    assert bare["tokens"] == plain["tokens"][1:]
    chat_pieces = answer(standin, "/tokenize", {"messages": HELLO, "return_token_strs": True})
    assert chat_pieces["count"] == len(chat_pieces["token_strs"]) == HELLO_PROMPT_TOKENS


def test_detokenize_spells_back_answers(standin: ServerProcess) -> None:
    text = chat_text(standin, "base", HELLO, 12)
    tokens = answer(standin, "/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"]
    assert answer(standin, "/detokenize", {"model": "tenant-b", "tokens": tokens}) == {
        "prompt": text
    }
    with_bos = answer(standin, "/tokenize", {"prompt": text})["tokens"]
    assert answer(standin, "/detokenize", {"tokens": with_bos})["prompt"] == "<s>" + text
    every_word = " ".join(VOCABULARY)  # no two of its pieces share an id
    tokens = answer(standin, "/tokenize", {"prompt": every_word})["tokens"]
    assert answer(standin, "/detokenize", {"tokens": tokens})["prompt"] == "<s>" + every_word
    # an id the stand-in cannot spell back is left out, as vLLM leaves out unknown ids
    assert answer(standin, "/detokenize", {"tokens": [99999]})["prompt"] == ""


@pytest.mark.parametrize(
    ("path", "request_body", "status", "param"),
    [
        ("/tokenize", {"model": "nope", "prompt": "hi"}, 404, "model"),
        ("/detokenize", {"model": "nope", "tokens": [1]}, 404, "model"),
        ("/detokenize", {"model": "base"}, 400, "body.tokens"),
        ("/detokenize", {"tokens": "1 2"}, 400, "body.tokens"),
    ],
)
def test_tokenizer_errors(
    standin: ServerProcess, path: str, request_body: dict, status: int, param: str
) -> None:
    body = answer(standin, path, request_body, status)
    assert (body["error"]["param"], body["error"]["code"]) == (param, status)


# n > 1


def test_chat_with_n_choices(standin: ServerProcess) -> None:
    single = chat(standin, model="tenant-a", max_tokens=6)
    body = chat(standin, model="tenant-a", max_tokens=6, n=3)
    contents = [choice["message"]["content"] for choice in body["choices"]]
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    assert contents[0] == single["choices"][0]["message"]["content"]
    assert len(set(contents)) == 3
    assert body["usage"]["prompt_tokens"] == HELLO_PROMPT_TOKENS
    assert body["usage"]["completion_tokens"] == 3 * 6


def test_chat_stream_with_n_streams_every_choice(standin: ServerProcess) -> None:
    request = {"model": "tenant-b", "messages": HELLO, "max_tokens": 4, "n": 2}
    whole = answer(standin, "/v1/chat/completions", request)
    streamed = chunks(
        standin, "/v1/chat/completions", {**request, "stream_options": {"include_usage": True}}
    )
    *choice_chunks, usage_chunk = streamed
    choices = [chunk["choices"][0] for chunk in choice_chunks]
    # a role chunk for every choice first, then the choices' tokens side by side
    assert [(c["index"], c["delta"]) for c in choices[:2]] == [
        (0, {"role": "assistant", "content": ""}),
        (1, {"role": "assistant", "content": ""}),
    ]
    assert [c["index"] for c in choices[2:]] == [0, 1] * 4
    for index, expected in enumerate(whole["choices"]):
        mine = [c for c in choices[2:] if c["index"] == index]
        assert "".join(c["delta"]["content"] for c in mine) == expected["message"]["content"]
        assert [c["finish_reason"] for c in mine] == [None, None, None, "length"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 8
    assert usage_chunk["system_fingerprint"].startswith("vllm-0.32.0-")


def test_completions_with_n_index_prompts_then_choices(standin: ServerProcess) -> None:
    request = {
        "model": "tenant-a",
        "prompt": ["once upon a time", "the river"],
        "max_tokens": 3,
        "n": 2,
    }
    whole = answer(standin, "/v1/completions", request)
    assert [choice["index"] for choice in whole["choices"]] == [0, 1, 2, 3]
    alone = answer(standin, "/v1/completions", {**request, "prompt": "the river", "n": 1})
    assert whole["choices"][2]["text"] == alone["choices"][0]["text"]
    assert whole["usage"]["prompt_tokens"] == 5 + 3  # each prompt counted once
    streamed = chunks(standin, "/v1/completions", request)
    for expected in whole["choices"]:
        mine = [c["choices"][0] for c in streamed if c["choices"][0]["index"] == expected["index"]]
        assert "".join(c["text"] for c in mine) == expected["text"]
        assert [c["finish_reason"] for c in mine] == [None, None, "length"]
    # without a usage chunk to carry it, each choice's last chunk carries the fingerprint
    finishing = [c for c in streamed if c["choices"][0]["finish_reason"]]
    assert [c["system_fingerprint"] for c in finishing] == [whole["system_fingerprint"]] * 4
    assert sum("system_fingerprint" in c for c in streamed) == 4


def test_n_choices_decode_side_by_side(standin: ServerProcess) -> None:
    """Four choices of 5 tokens take 4 inter-token gaps, as in vLLM's batch, not 19."""
    set_faults(standin, itl_ms=50)
    started = time.monotonic()
    chat(standin, max_tokens=5, n=4)
    assert 0.2 <= time.monotonic() - started < 0.6


@pytest.mark.parametrize(
    ("request_body", "message"),
    [({"n": 0}, "n must be at least 1, got 0."),
     ({"n": 2, "temperature": 0}, "n must be 1 when using greedy sampling, got 2.")],
)  # fmt: skip
def test_n_errors(standin: ServerProcess, request_body: dict, message: str) -> None:
    body = answer(standin, "/v1/chat/completions", {"messages": HELLO, **request_body}, 400)
    assert_error(body, "BadRequestError", None, message)
