"""Anthropic's Messages API through the gateway in front of a real vLLM (CPU build, tiny model):
the anthropic SDK gets what vLLM direct gives, vLLM's own errors in Anthropic's shape, and the
fields the gateway sets are the ones vLLM's Anthropic route takes."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.fixtures.gateway import Gateway
from tests.fixtures.real_vllm import RealVllm

pytestmark = pytest.mark.vllm

PROMPT: Any = [{"role": "user", "content": "def main():"}]


def sdk(url: str, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)


@pytest.mark.parametrize("model", ["base", "tenant-a"])
async def test_answers_streams_and_counts_equal_direct(
    real_vllm: RealVllm, vllm_gateway: Gateway, model: str
) -> None:
    async with (
        sdk(real_vllm.url, "unused") as direct,
        sdk(vllm_gateway.url, vllm_gateway.api_key) as client,
    ):
        await same_answers(direct, client, model)


async def same_answers(
    direct: anthropic.AsyncAnthropic, client: anthropic.AsyncAnthropic, model: str
) -> None:
    ask: dict[str, Any] = {
        "model": model,
        "max_tokens": 12,
        "messages": PROMPT,
        "extra_body": {"temperature": 0},  # greedy (the SDK's own field is gone)
    }
    expected = await direct.messages.create(**ask, system="be brief")
    proxied = await client.messages.create(**ask, system="be brief")
    assert proxied.content == expected.content
    assert proxied.model == model and proxied.stop_reason == expected.stop_reason
    assert proxied.usage.input_tokens == expected.usage.input_tokens
    assert proxied.usage.output_tokens == expected.usage.output_tokens == 12
    async with client.messages.stream(**ask, system="be brief") as stream:
        streamed = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()
    first = expected.content[0]
    assert first.type == "text" and streamed == first.text
    assert final.usage.output_tokens == 12
    counted = await client.messages.count_tokens(model=model, messages=PROMPT)
    assert (
        counted.input_tokens
        == (await direct.messages.count_tokens(model=model, messages=PROMPT)).input_tokens
    )


async def test_vllms_errors_come_in_anthropics_shape(vllm_gateway: Gateway) -> None:
    async with sdk(vllm_gateway.url, vllm_gateway.api_key) as client:
        # refused by vLLM's request model: OpenAI's shape upstream, rewritten
        with pytest.raises(anthropic.BadRequestError) as invalid:
            await client.messages.create(model="base", max_tokens=0, messages=PROMPT)
        # refused by vLLM's handler: Anthropic's envelope with OpenAI's type, rewritten
        with pytest.raises(anthropic.BadRequestError) as too_long:
            await client.messages.create(model="base", max_tokens=600, messages=PROMPT)
        with pytest.raises(anthropic.NotFoundError) as unknown:  # the gateway's own
            await client.messages.create(model="nope", max_tokens=5, messages=PROMPT)
    assert invalid.value.type == too_long.value.type == "invalid_request_error"
    assert "max_tokens" in (invalid.value.api_message or "")
    assert "512" in (too_long.value.api_message or "")  # the model's context length
    assert unknown.value.type == "not_found_error"


def test_vllm_takes_cache_salt_on_messages_and_ignores_priority(real_vllm: RealVllm) -> None:
    """What `tenant_fields` rests on: the salt applies, priority is dropped without a word."""
    body = {"model": "base", "max_tokens": 2, "messages": PROMPT}
    salted = httpx.post(real_vllm.url + "/v1/messages", json={**body, "cache_salt": "s"})
    assert salted.status_code == 200, salted.text
    empty_salt = httpx.post(real_vllm.url + "/v1/messages", json={**body, "cache_salt": ""})
    assert empty_salt.status_code == 400  # validated: the field is read
    # not a field of vLLM's Anthropic request model: dropped unread
    prioritised = httpx.post(real_vllm.url + "/v1/messages", json={**body, "priority": 5})
    assert prioritised.status_code == 200, prioritised.text
