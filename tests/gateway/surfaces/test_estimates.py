"""The reservation estimate and the settled count, on parsed request bodies."""

from __future__ import annotations

import orjson

from gateway.core.request import InferenceRequest
from gateway.limits.estimate import MAX_TOKENS, estimated_usage, tokens_used
from gateway.surfaces import ChatCompletions, Completions, Embeddings, Surface

CHAT = ChatCompletions()


def parsed(surface: Surface, **body: object) -> InferenceRequest:
    return surface.parse(orjson.dumps({"model": "base", **body}))


def chat(content: object, **body: object) -> InferenceRequest:
    return parsed(CHAT, messages=[{"role": "user", "content": content}], **body)


def estimate_prompt_tokens(request: InferenceRequest) -> int:
    return CHAT.estimate_prompt_tokens(request)


def test_chat_prompt_is_characters_over_four_plus_template_tokens() -> None:
    # 40 characters -> 10 tokens, + 4 for the message, + 3 for the reply header
    assert estimate_prompt_tokens(chat("x" * 40)) == 17
    assert estimate_prompt_tokens(chat([{"type": "text", "text": "x" * 41}])) == 18


def test_tools_and_tool_calls_count_as_text() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    assert estimate_prompt_tokens(chat("hi", tools=tools)) > estimate_prompt_tokens(chat("hi"))


def test_completion_part_is_the_most_the_request_may_generate() -> None:
    assert CHAT.estimate_tokens(chat("x" * 40, max_tokens=100), 1024) == 117
    assert (
        CHAT.estimate_tokens(chat("x" * 40, max_completion_tokens=50, max_tokens=100), 1024) == 67
    )
    assert CHAT.estimate_tokens(chat("x" * 40), 1024) == 17 + 1024
    assert CHAT.estimate_tokens(chat("x" * 40, max_tokens=100, n=3), 1024) == 17 + 300


def test_completion_prompts_and_embeddings() -> None:
    assert (
        Completions().estimate_tokens(parsed(Completions(), prompt=[5, 6, 7], max_tokens=10), 0)
        == 13
    )
    assert (
        Completions().estimate_tokens(parsed(Completions(), prompt="x" * 8, max_tokens=0), 0) == 3
    )
    embedding = parsed(Embeddings(), input=["x" * 8, "y" * 4])
    assert Embeddings().estimate_tokens(embedding, 1024) == (1 + 2) + (1 + 1)


def test_absurd_max_tokens_stays_a_small_integer() -> None:
    assert CHAT.estimate_tokens(chat("hi", max_tokens=2**63 - 1), 1024) == MAX_TOKENS


def test_settled_count_prefers_the_upstream_usage() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
    assert tokens_used(usage) == 42
    assert tokens_used({"prompt_tokens": 12, "completion_tokens": 30}) == 42
    # a stream cut before its usage chunk: the prompt estimate plus one token per event
    assert tokens_used(estimated_usage(20, 7)) == 27
    assert estimated_usage(20, 7)["completion_tokens"] == 7
    # nothing came back: nothing was generated
    assert tokens_used(None) == 0
