"""Tool calling through the gateway in front of a real vLLM (CPU build, tiny model, started
with the launcher's TINY_MODEL_TOOL_ARGS): with tool_choice "required" and named, vLLM's guided
decoding makes even the random-weight model call the tool with schema-valid arguments, and the
gateway relays the calls (chat, whole and streamed; Responses function-call items and events)
as vLLM direct gives them, under the tenant's model names."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolParam,
)
from openai.types.responses import FunctionToolParam, Response, ResponseFunctionToolCall
from openai.types.responses.response_create_params import ToolChoice

from tests.fixtures.gateway import Gateway
from tests.fixtures.real_vllm import RealVllm

pytestmark = pytest.mark.vllm

# enums keep a random model's arguments short: it closes the call within max_tokens
PARAMETERS: dict[str, object] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
        "days": {"type": "integer", "enum": [1, 2, 3]},
    },
    "required": ["city", "days"],
}
CHAT_TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}}
]
RESPONSES_TOOLS: list[FunctionToolParam] = [
    {"type": "function", "name": "get_weather", "parameters": PARAMETERS, "strict": None}
]
CHAT_CHOICES: list[ChatCompletionToolChoiceOptionParam] = [
    "required",
    {"type": "function", "function": {"name": "get_weather"}},
]
RESPONSES_CHOICES: list[ToolChoice] = ["required", {"type": "function", "name": "get_weather"}]
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


def clients(real_vllm: RealVllm, gateway: Gateway) -> tuple[openai.OpenAI, openai.OpenAI]:
    direct = openai.OpenAI(base_url=real_vllm.url + "/v1", api_key="unused", max_retries=0)
    proxied = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.api_key, max_retries=0)
    return direct, proxied


def assert_valid(call: tuple[str, str]) -> None:
    name, arguments = call
    assert name == "get_weather"
    parsed = json.loads(arguments)
    assert parsed["city"] in ("Paris", "Rome", "Oslo") and parsed["days"] in (1, 2, 3)


def chat_call(
    sdk: openai.OpenAI, model: str, choice: ChatCompletionToolChoiceOptionParam, stream: bool
) -> tuple[str, str]:
    """The one call the model made: its name and arguments (a stream's deltas joined: vLLM
    may send two tokens in one delta when its output queue backs up, so the split is not
    deterministic)."""
    answer = sdk.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=CHAT_TOOLS,
        tool_choice=choice,
        parallel_tool_calls=False,
        max_tokens=64,
        temperature=0,
        stream=stream,
    )
    if isinstance(answer, ChatCompletion):
        assert answer.model == model
        calls = answer.choices[0].message.tool_calls or []
        assert len(calls) == 1 and calls[0].type == "function"
        return calls[0].function.name, calls[0].function.arguments
    names, arguments = [], ""
    for chunk in answer:
        assert chunk.model == model
        for call in (delta for c in chunk.choices for delta in c.delta.tool_calls or []):
            assert call.index == 0 and call.function is not None
            names += [call.function.name] if call.function.name else []
            arguments += call.function.arguments or ""
    assert len(names) == 1
    return names[0], arguments


@pytest.mark.parametrize("model", ["base", "tenant-a"])
@pytest.mark.parametrize("choice", CHAT_CHOICES, ids=["required", "named"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_tool_calls_equal_direct(
    real_vllm: RealVllm,
    vllm_gateway: Gateway,
    model: str,
    choice: ChatCompletionToolChoiceOptionParam,
    stream: bool,
) -> None:
    direct, proxied = clients(real_vllm, vllm_gateway)
    call = chat_call(proxied, model, choice, stream)
    assert call == chat_call(direct, model, choice, stream)
    assert_valid(call)


def responses_call(
    sdk: openai.OpenAI, model: str, choice: ToolChoice, stream: bool
) -> tuple[str, str]:
    """The one function call of the response: its name and arguments; a stream's
    `function_call_arguments` deltas must add up to its `.done` event's arguments."""
    answer = sdk.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=RESPONSES_TOOLS,
        tool_choice=choice,
        parallel_tool_calls=False,
        max_output_tokens=64,
        temperature=0,
        stream=stream,
    )
    if isinstance(answer, Response):
        assert answer.model == model
        calls = [item for item in answer.output if isinstance(item, ResponseFunctionToolCall)]
        assert len(calls) == 1
        return calls[0].name, calls[0].arguments
    deltas, done, items = "", [], []
    for event in answer:
        if event.type == "response.function_call_arguments.delta":
            deltas += event.delta
        elif event.type == "response.function_call_arguments.done":
            done.append(event.arguments)
        elif event.type == "response.output_item.done":
            assert isinstance(event.item, ResponseFunctionToolCall)
            items.append((event.item.name, event.item.arguments))
        elif event.type == "response.completed":
            assert event.response.model == model
    assert len(items) == 1 and done == [deltas]
    return items[0]


@pytest.mark.parametrize("choice", RESPONSES_CHOICES, ids=["required", "named"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_function_calls_equal_direct(
    real_vllm: RealVllm, vllm_gateway: Gateway, choice: ToolChoice, stream: bool
) -> None:
    direct, proxied = clients(real_vllm, vllm_gateway)
    call = responses_call(proxied, "base", choice, stream)
    assert call == responses_call(direct, "base", choice, stream)
    assert_valid(call)
