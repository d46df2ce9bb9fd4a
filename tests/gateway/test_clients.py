"""The clients our users write with: openai (sync, async, stream), LangChain, LiteLLM."""

from __future__ import annotations

import os

import openai
import pytest

from tests.fixtures.gateway import Gateway

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for the cost map

MESSAGES = [{"role": "user", "content": "say something"}]


@pytest.fixture(scope="module")
def base_url(gateway: Gateway) -> str:
    return gateway.url + "/v1"


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.api_key


def test_openai_sync_chat_completion_and_embedding(base_url: str, key: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=key)
    chat = client.chat.completions.create(model="tenant-a", messages=MESSAGES, max_tokens=5)
    assert chat.model == "tenant-a"
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens == 5
    text = client.completions.create(model="base", prompt="once upon", max_tokens=5)
    assert text.choices[0].text
    vectors = client.embeddings.create(model="base", input=["a", "b"])
    assert len(vectors.data) == 2 and vectors.data[0].embedding
    assert {m.id for m in client.models.list()} >= {"base", "tenant-a"}
    assert client.models.retrieve("tenant-a").id == "tenant-a"


def test_openai_stream_with_usage(base_url: str, key: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=key)
    stream = client.chat.completions.create(
        model="base",
        messages=MESSAGES,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    events = list(stream)
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 6


async def test_openai_async_stream(base_url: str, key: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=key)
    stream = await client.chat.completions.create(
        model="tenant-b", messages=MESSAGES, max_tokens=4, stream=True
    )
    events = [event async for event in stream]
    assert all(event.usage is None for event in events)  # not asked for: not passed on
    assert events[-1].choices[0].finish_reason == "length"
    await client.close()


def test_langchain_invoke_and_stream(base_url: str, key: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="tenant-a", base_url=base_url, api_key=key, max_tokens=5)
    answer = llm.invoke("say something")
    assert answer.content
    streamed = "".join(chunk.content for chunk in llm.stream("say something"))
    assert streamed == answer.content  # the stand-in is deterministic per (model, prompt)


def test_litellm_completion(base_url: str, key: str) -> None:
    import litellm

    response = litellm.completion(
        model="openai/tenant-b",
        api_base=base_url,
        api_key=key,
        messages=MESSAGES,
        max_tokens=5,
    )
    assert response.choices[0].message.content
    streamed = litellm.completion(
        model="openai/tenant-b",
        api_base=base_url,
        api_key=key,
        messages=MESSAGES,
        max_tokens=5,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed)
    assert text == response.choices[0].message.content
