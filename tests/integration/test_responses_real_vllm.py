"""The Responses API through the gateway in front of a real vLLM (CPU build, tiny model): the
openai SDK's `responses.create` and `responses.stream` get what vLLM direct gives, and the
output guard ends a real stream the way the SDK expects."""

from __future__ import annotations

import time

import openai
import pytest
from openai.lib.streaming.responses import ResponseStreamManager
from openai.types.responses import Response, ResponseTextDeltaEvent

from tests.fixtures.gateway import Gateway
from tests.fixtures.real_vllm import RealVllm
from tests.gateway.surfaces.test_responses import blocked_text, key_blocking

pytestmark = pytest.mark.vllm

PROMPT = "def main():"
MAX_OUTPUT_TOKENS = 12


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def create(sdk: openai.OpenAI, model: str) -> Response:
    return sdk.responses.create(
        model=model, input=PROMPT, max_output_tokens=MAX_OUTPUT_TOKENS, temperature=0
    )


def stream(sdk: openai.OpenAI, model: str) -> ResponseStreamManager[None]:
    return sdk.responses.stream(
        model=model, input=PROMPT, max_output_tokens=MAX_OUTPUT_TOKENS, temperature=0
    )


@pytest.mark.parametrize("model", ["base", "tenant-a"])
def test_whole_and_streamed_responses_equal_direct(
    real_vllm: RealVllm, vllm_gateway: Gateway, model: str
) -> None:
    direct = create(client(real_vllm.url, "unused"), model)
    proxied = client(vllm_gateway.url, vllm_gateway.api_key)
    whole = create(proxied, model)
    assert whole.output_text == direct.output_text
    assert whole.usage == direct.usage
    assert whole.model == model
    with stream(proxied, model) as events:
        deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
        final = events.get_final_response()
    assert "".join(deltas) == final.output_text == direct.output_text
    assert final.usage == direct.usage
    assert final.model == model


def test_a_blocked_real_stream_ends_incomplete(real_vllm: RealVllm, vllm_gateway: Gateway) -> None:
    text = create(client(real_vllm.url, "unused"), "base").output_text
    words = [word for word in text.split() if word.isalpha() and len(word) > 2]
    assert words, f"no plain word to block in {text!r}"
    term = words[len(words) // 2]
    guarded = client(vllm_gateway.url, key_blocking(vllm_gateway, term))
    safe = blocked_text(stream(guarded, "base"))
    assert text.startswith(safe) and len(safe) < len(text)
    whole = create(guarded, "base")
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "content_filter"
    assert whole.output_text == safe


def test_a_conversation_continues_on_a_vllm_that_keeps_nothing(
    real_vllm: RealVllm, vllm_gateway: Gateway
) -> None:
    """vLLM keeps nothing (its store is off): the gateway expands previous_response_id into
    the input vLLM gets, which answers as it answers the same conversation sent whole."""
    proxied = client(vllm_gateway.url, vllm_gateway.api_key)
    first = create(proxied, "tenant-a")
    assert proxied.responses.retrieve(first.id).output_text == first.output_text
    second = proxied.responses.create(
        model="tenant-a",
        input="and then?",
        previous_response_id=first.id,
        max_output_tokens=MAX_OUTPUT_TOKENS,
        temperature=0,
    )
    assert second.previous_response_id == first.id and second.model == "tenant-a"
    whole = client(real_vllm.url, "unused").responses.create(
        model="tenant-a",
        input=[
            {"role": "user", "content": PROMPT},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "and then?"},
        ],
        max_output_tokens=MAX_OUTPUT_TOKENS,
        temperature=0,
    )
    assert second.output_text == whole.output_text
    assert second.usage is not None and whole.usage is not None
    assert second.usage.input_tokens == whole.usage.input_tokens


def test_a_background_response_completes_and_streams_again(vllm_gateway: Gateway) -> None:
    proxied = client(vllm_gateway.url, vllm_gateway.api_key)
    queued = proxied.responses.create(
        model="base", input=PROMPT, max_output_tokens=MAX_OUTPUT_TOKENS, background=True
    )
    assert queued.status == "queued"
    deadline = time.monotonic() + 60
    while (read := proxied.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert read.status in ("completed", "incomplete") and read.output_text
    with proxied.responses.retrieve(queued.id, stream=True) as events:
        deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert "".join(deltas) == read.output_text
