"""The client calls of the matrix, each a small function `(base_url, api_key, model) -> str`.

`base_url` is the server's root (`http://127.0.0.1:PORT`, no `/v1`): each call adds what its
client expects. A call returns a short, non-empty description of its answer (text, a tool
call, a token count) and raises on anything else; `answer()` and `expect()` do the checks.
Clients are imported inside the calls, so a missing or broken client fails only its calls.

The model has random weights: answers are gibberish, and a tool call comes only when
`tool_choice` forces one (vLLM's guided decoding then keeps the arguments schema-valid; enums
keep them short). Token limits stay small so the whole matrix runs in minutes on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel

TIMEOUT_S = 60.0
MAX_TOKENS = 16

CallFunction = Callable[[str, str, str], str]


@dataclass(frozen=True)
class Call:
    """One client call: which client, what it does, and the function that makes it."""

    client: str
    name: str
    function: CallFunction

    @property
    def id(self) -> str:
        return f"{self.client}: {self.name}"


CALLS: list[Call] = []


def call(client: str, name: str) -> Callable[[CallFunction], CallFunction]:
    """Register the decorated function as the call `name` of `client`."""

    def register(function: CallFunction) -> CallFunction:
        CALLS.append(Call(client, name, function))
        return function

    return register


class WrongAnswer(Exception):
    """The call returned, but not the answer it should have (empty, wrong type, no tool call)."""


def answer(value: object, kind: type = str) -> str:
    """`value` if it is a non-empty `kind`, as a string; else WrongAnswer."""
    if not isinstance(value, kind) or value in ("", [], {}, None):
        raise WrongAnswer(f"expected a non-empty {kind.__name__}, got {value!r:.120}")
    text = value if isinstance(value, str) else repr(value)
    if not text.strip():
        raise WrongAnswer(f"expected a non-empty answer, got {value!r:.120}")
    return text


def expect(condition: object, message: str) -> None:
    if not condition:
        raise WrongAnswer(message)


def run_async(coroutine: Any) -> Any:
    """Run an async client call to completion in a fresh event loop."""
    return asyncio.run(coroutine)


# --- shared inputs ----------------------------------------------------------------------------

HELLO = "Say hello in one short sentence."
SYSTEM = "You are a terse assistant. Answer in five words or fewer."
CITIES = ["Paris", "Rome", "Oslo"]
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": CITIES}},
    "required": ["city"],
}
WEATHER_QUESTION = "What is the weather in Paris?"
CHAT_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": WEATHER_PARAMETERS,
        },
    }
]
RESPONSES_TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_PARAMETERS,
        "strict": False,
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": WEATHER_PARAMETERS,
    }
]
MULTI_TURN: list[Any] = [
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada."},
    {"role": "user", "content": "What is my name?"},
]


class Weather(BaseModel):
    """A structured answer for the structured-output calls."""

    city: Literal["Paris", "Rome", "Oslo"]


def get_weather(city: Literal["Paris", "Rome", "Oslo"]) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def tool_call(name: str | None, arguments: object) -> str:
    """A tool call as `name(arguments)`, checked to be get_weather with a known city."""
    expect(name == "get_weather", f"expected a get_weather call, got {name!r}")
    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    expect(
        isinstance(parsed, dict) and parsed.get("city") in CITIES,
        f"bad arguments {arguments!r:.120}",
    )
    return f"{name}({json.dumps(parsed)})"


# --- openai SDK: chat and completions ---------------------------------------------------------


def openai_client(base_url: str, api_key: str) -> Any:
    import openai

    return openai.OpenAI(
        base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=TIMEOUT_S
    )


def async_openai_client(base_url: str, api_key: str) -> Any:
    import openai

    return openai.AsyncOpenAI(
        base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=TIMEOUT_S
    )


def chat(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    """One chat completion with the openai SDK; `options` add to or replace the defaults."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": HELLO}],
        "max_tokens": MAX_TOKENS,
        **options,
    }
    return openai_client(base_url, api_key).chat.completions.create(**body)


@call("openai", "chat.completions.create")
def openai_chat(base_url: str, api_key: str, model: str) -> str:
    return answer(chat(base_url, api_key, model).choices[0].message.content)


@call("openai", "chat.completions.create, system prompt")
def openai_chat_system(base_url: str, api_key: str, model: str) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": HELLO}]
    return answer(chat(base_url, api_key, model, messages=messages).choices[0].message.content)


@call("openai", "chat.completions.create, temperature 0, max_tokens 8")
def openai_chat_greedy(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model, temperature=0, max_tokens=8)
    expect(completion.usage.completion_tokens <= 8, "more than max_tokens")
    return answer(completion.choices[0].message.content)


@call("openai", "chat.completions.create, multi-turn")
def openai_chat_multi_turn(base_url: str, api_key: str, model: str) -> str:
    return answer(chat(base_url, api_key, model, messages=MULTI_TURN).choices[0].message.content)


@call("openai", "chat.completions.create, no max_tokens")
def openai_chat_default_length(base_url: str, api_key: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": HELLO}]}
    completion = openai_client(base_url, api_key).chat.completions.create(**body)
    return answer(completion.choices[0].message.content)


@call("openai", "chat.completions.create, model name echoed")
def openai_chat_model_name(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model)
    expect(completion.model == model, f"answer names model {completion.model!r}, not {model!r}")
    return answer(completion.model)


@call("openai", "chat.completions.create, stop + seed + top_p")
def openai_chat_sampling(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model, stop=["\n"], seed=7, top_p=0.9, temperature=0.7)
    return answer(completion.choices[0].message.content)


@call("openai", "chat.completions.create, n=2")
def openai_chat_n2(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model, n=2)
    expect(len(completion.choices) == 2, f"{len(completion.choices)} choices, not 2")
    return answer(" | ".join(choice.message.content for choice in completion.choices))


@call("openai", "chat.completions.create, logprobs")
def openai_chat_logprobs(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model, logprobs=True, top_logprobs=2)
    content = completion.choices[0].logprobs.content
    expect(content, "no logprobs")
    return answer(f"{len(content)} token logprobs")


@call("openai", "chat.completions.create, stream")
def openai_chat_stream(base_url: str, api_key: str, model: str) -> str:
    chunks = list(chat(base_url, api_key, model, stream=True))
    names = {chunk.model for chunk in chunks}
    expect(names == {model}, f"chunks name models {sorted(names)}, not {model!r}")
    return answer("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))


@call("openai", "chat.completions.create, stream + include_usage")
def openai_chat_stream_usage(base_url: str, api_key: str, model: str) -> str:
    chunks = list(
        chat(base_url, api_key, model, stream=True, stream_options={"include_usage": True})
    )
    usage = chunks[-1].usage
    expect(usage is not None and usage.completion_tokens > 0, "no usage in the last chunk")
    return answer(f"{usage.completion_tokens} tokens")


@call("openai", "chat.completions.create, stream n=2")
def openai_chat_stream_n2(base_url: str, api_key: str, model: str) -> str:
    indices = {
        c.index for chunk in chat(base_url, api_key, model, stream=True, n=2) for c in chunk.choices
    }
    expect(indices == {0, 1}, f"choice indices {sorted(indices)}, not [0, 1]")
    return answer("indices 0 and 1")


@call("openai", "chat.completions.create, tools, tool_choice auto")
def openai_chat_tools_auto(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model, tools=CHAT_TOOLS, tool_choice="auto")
    message = completion.choices[0].message
    return answer(message.content or str(message.tool_calls))


@call("openai", "chat.completions.create, tool_choice required")
def openai_chat_tools_required(base_url: str, api_key: str, model: str) -> str:
    completion = chat(
        base_url,
        api_key,
        model,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=CHAT_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=64,
        temperature=0,
    )
    calls = completion.choices[0].message.tool_calls
    expect(calls, "no tool call")
    return tool_call(calls[0].function.name, calls[0].function.arguments)


@call("openai", "chat.completions.create, tool_choice named")
def openai_chat_tools_named(base_url: str, api_key: str, model: str) -> str:
    completion = chat(
        base_url,
        api_key,
        model,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=CHAT_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
    )
    calls = completion.choices[0].message.tool_calls
    expect(calls, "no tool call")
    return tool_call(calls[0].function.name, calls[0].function.arguments)


@call("openai", "chat.completions.create, tool_choice none")
def openai_chat_tools_none(base_url: str, api_key: str, model: str) -> str:
    completion = chat(base_url, api_key, model, tools=CHAT_TOOLS, tool_choice="none")
    return answer(completion.choices[0].message.content)


@call("openai", "chat.completions.create, stream, tool_choice required")
def openai_chat_stream_tools(base_url: str, api_key: str, model: str) -> str:
    stream = chat(
        base_url,
        api_key,
        model,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=CHAT_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=64,
        stream=True,
    )
    name, arguments = None, ""
    for chunk in stream:
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = name or delta_call.function.name
            arguments += delta_call.function.arguments or ""
    return tool_call(name, arguments)


@call("openai", "chat.completions.create, tool result turn")
def openai_chat_tool_result(base_url: str, api_key: str, model: str) -> str:
    messages = [
        {"role": "user", "content": WEATHER_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C."},
    ]
    completion = chat(base_url, api_key, model, messages=messages, tools=CHAT_TOOLS)
    return answer(completion.choices[0].message.content)


@call("openai", "chat.completions.create, response_format json_schema")
def openai_chat_json_schema(base_url: str, api_key: str, model: str) -> str:
    schema = {"name": "weather", "schema": WEATHER_PARAMETERS}
    completion = chat(
        base_url,
        api_key,
        model,
        response_format={"type": "json_schema", "json_schema": schema},
        max_tokens=32,
    )
    return answer(Weather.model_validate_json(completion.choices[0].message.content).city)


@call("openai", "chat.completions.parse, pydantic")
def openai_chat_parse(base_url: str, api_key: str, model: str) -> str:
    completion = openai_client(base_url, api_key).chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        response_format=Weather,
        max_tokens=32,
    )
    parsed = completion.choices[0].message.parsed
    expect(isinstance(parsed, Weather), f"parsed is {parsed!r}")
    return answer(parsed.city)


@call("openai", "chat.completions.with_raw_response")
def openai_chat_raw(base_url: str, api_key: str, model: str) -> str:
    raw = openai_client(base_url, api_key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": HELLO}], max_tokens=MAX_TOKENS
    )
    expect(raw.headers.get("content-type", "").startswith("application/json"), "not JSON")
    return answer(raw.parse().choices[0].message.content)


@call("openai", "AsyncOpenAI chat.completions.create")
def openai_async_chat(base_url: str, api_key: str, model: str) -> str:
    async def run() -> str:
        async with async_openai_client(base_url, api_key) as client:
            completion = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": HELLO}], max_tokens=MAX_TOKENS
            )
            return completion.choices[0].message.content

    return answer(run_async(run()))


@call("openai", "AsyncOpenAI chat.completions.create, stream")
def openai_async_chat_stream(base_url: str, api_key: str, model: str) -> str:
    async def run() -> str:
        async with async_openai_client(base_url, api_key) as client:
            stream = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": HELLO}],
                max_tokens=MAX_TOKENS,
                stream=True,
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    return answer(run_async(run()))


@call("openai", "AsyncOpenAI 4 concurrent chats")
def openai_async_concurrent(base_url: str, api_key: str, model: str) -> str:
    async def run() -> list[str]:
        async with async_openai_client(base_url, api_key) as client:
            completions = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": HELLO}], max_tokens=8
                    )
                    for _ in range(4)
                )
            )
            return [c.choices[0].message.content for c in completions]

    texts = run_async(run())
    expect(all(texts), "an empty answer")
    return answer(f"{len(texts)} answers")


@call("openai", "completions.create, temperature 0")
def openai_completion(base_url: str, api_key: str, model: str) -> str:
    completion = openai_client(base_url, api_key).completions.create(
        model=model, prompt="def main():", max_tokens=MAX_TOKENS, temperature=0
    )
    return answer(completion.choices[0].text)


@call("openai", "completions.create, stream")
def openai_completion_stream(base_url: str, api_key: str, model: str) -> str:
    stream = openai_client(base_url, api_key).completions.create(
        model=model, prompt="def main():", max_tokens=MAX_TOKENS, stream=True
    )
    return answer("".join(chunk.choices[0].text for chunk in stream if chunk.choices))


@call("openai", "models.list")
def openai_models_list(base_url: str, api_key: str, model: str) -> str:
    ids = [entry.id for entry in openai_client(base_url, api_key).models.list()]
    expect(model in ids, f"{model!r} not in {ids}")
    return answer(", ".join(ids))


@call("openai", "models.retrieve")
def openai_models_retrieve(base_url: str, api_key: str, model: str) -> str:
    return answer(openai_client(base_url, api_key).models.retrieve(model).id)


@call("openai", "chat.completions.create, unknown model raises NotFoundError")
def openai_unknown_model(base_url: str, api_key: str, model: str) -> str:
    import openai

    try:
        chat(base_url, api_key, model + "-nonexistent")
    except openai.NotFoundError as error:
        return answer(f"NotFoundError {error.status_code}")
    raise WrongAnswer("an unknown model was served")


@call("openai", "embeddings.create")
def openai_embeddings(base_url: str, api_key: str, model: str) -> str:
    result = openai_client(base_url, api_key).embeddings.create(model=model, input="hello")
    return answer(f"{len(result.data[0].embedding)} dims")


# --- openai SDK: Responses --------------------------------------------------------------------


def respond(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    """One `responses.create` with the openai SDK; `options` add to or replace the defaults."""
    body: dict[str, Any] = {
        "model": model,
        "input": HELLO,
        "max_output_tokens": MAX_TOKENS,
        **options,
    }
    return openai_client(base_url, api_key).responses.create(**body)


def function_call_of(response: Any) -> str:
    """The response's first function call, checked."""
    calls = [item for item in response.output if item.type == "function_call"]
    expect(calls, f"no function call in {[item.type for item in response.output]}")
    return tool_call(calls[0].name, calls[0].arguments)


@call("openai", "responses.create")
def openai_responses(base_url: str, api_key: str, model: str) -> str:
    return answer(respond(base_url, api_key, model).output_text)


@call("openai", "responses.create, instructions")
def openai_responses_instructions(base_url: str, api_key: str, model: str) -> str:
    return answer(respond(base_url, api_key, model, instructions=SYSTEM).output_text)


@call("openai", "responses.create, input items multi-turn")
def openai_responses_items(base_url: str, api_key: str, model: str) -> str:
    return answer(respond(base_url, api_key, model, input=MULTI_TURN).output_text)


@call("openai", "responses.create, temperature 0, max_output_tokens 8")
def openai_responses_greedy(base_url: str, api_key: str, model: str) -> str:
    response = respond(base_url, api_key, model, temperature=0, max_output_tokens=8)
    expect(response.usage.output_tokens <= 8, "more than max_output_tokens")
    return answer(response.output_text)


@call("openai", "responses.create, model name echoed")
def openai_responses_model_name(base_url: str, api_key: str, model: str) -> str:
    response = respond(base_url, api_key, model)
    expect(response.model == model, f"answer names model {response.model!r}, not {model!r}")
    return answer(response.model)


@call("openai", "responses.create, usage")
def openai_responses_usage(base_url: str, api_key: str, model: str) -> str:
    usage = respond(base_url, api_key, model).usage
    expect(usage.input_tokens > 0 and usage.output_tokens > 0, f"usage {usage}")
    return answer(f"{usage.input_tokens} in, {usage.output_tokens} out")


@call("openai", "responses.create, tool_choice required")
def openai_responses_tools_required(base_url: str, api_key: str, model: str) -> str:
    response = respond(
        base_url,
        api_key,
        model,
        input=WEATHER_QUESTION,
        tools=RESPONSES_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=64,
    )
    return function_call_of(response)


@call("openai", "responses.create, tool_choice named")
def openai_responses_tools_named(base_url: str, api_key: str, model: str) -> str:
    response = respond(
        base_url,
        api_key,
        model,
        input=WEATHER_QUESTION,
        tools=RESPONSES_TOOLS,
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
    )
    return function_call_of(response)


@call("openai", "responses.create, tools auto")
def openai_responses_tools_auto(base_url: str, api_key: str, model: str) -> str:
    response = respond(base_url, api_key, model, tools=RESPONSES_TOOLS, tool_choice="auto")
    return answer(response.output_text or str(response.output))


@call("openai", "responses.create, function_call_output turn")
def openai_responses_tool_result(base_url: str, api_key: str, model: str) -> str:
    items = [
        {"role": "user", "content": WEATHER_QUESTION},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C."},
    ]
    return answer(respond(base_url, api_key, model, input=items, tools=RESPONSES_TOOLS).output_text)


@call("openai", "responses.create, text.format json_schema")
def openai_responses_json_schema(base_url: str, api_key: str, model: str) -> str:
    text_format = {
        "format": {"type": "json_schema", "name": "weather", "schema": WEATHER_PARAMETERS}
    }
    response = respond(base_url, api_key, model, text=text_format, max_output_tokens=32)
    return answer(Weather.model_validate_json(response.output_text).city)


@call("openai", "responses.create, stream=True")
def openai_responses_stream(base_url: str, api_key: str, model: str) -> str:
    events = list(respond(base_url, api_key, model, stream=True))
    expect(events[-1].type == "response.completed", f"last event {events[-1].type}")
    names = {e.response.model for e in events if hasattr(e, "response")}
    expect(names == {model}, f"events name models {sorted(names)}, not {model!r}")
    return answer("".join(e.delta for e in events if e.type == "response.output_text.delta"))


@call("openai", "responses.create, stream, tool_choice required")
def openai_responses_stream_tools(base_url: str, api_key: str, model: str) -> str:
    events = list(
        respond(
            base_url,
            api_key,
            model,
            input=WEATHER_QUESTION,
            tools=RESPONSES_TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            max_output_tokens=64,
            stream=True,
        )
    )
    done = [e for e in events if e.type == "response.output_item.done"]
    expect(done, "no response.output_item.done event")
    item = done[0].item
    return tool_call(getattr(item, "name", None), getattr(item, "arguments", None))


@call("openai", "responses.stream helper")
def openai_responses_stream_helper(base_url: str, api_key: str, model: str) -> str:
    client = openai_client(base_url, api_key)
    with client.responses.stream(model=model, input=HELLO, max_output_tokens=MAX_TOKENS) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    expect(final.output_text == "".join(deltas), "final text differs from the deltas")
    return answer(final.output_text)


@call("openai", "responses.parse, pydantic text_format")
def openai_responses_parse(base_url: str, api_key: str, model: str) -> str:
    response = openai_client(base_url, api_key).responses.parse(
        model=model, input=WEATHER_QUESTION, text_format=Weather, max_output_tokens=32
    )
    parsed = response.output_parsed
    expect(isinstance(parsed, Weather), f"parsed is {parsed!r}")
    return answer(parsed.city)


@call("openai", "AsyncOpenAI responses.create")
def openai_async_responses(base_url: str, api_key: str, model: str) -> str:
    async def run() -> str:
        async with async_openai_client(base_url, api_key) as client:
            response = await client.responses.create(
                model=model, input=HELLO, max_output_tokens=MAX_TOKENS
            )
            return response.output_text

    return answer(run_async(run()))


@call("openai", "AsyncOpenAI responses.create, stream")
def openai_async_responses_stream(base_url: str, api_key: str, model: str) -> str:
    async def run() -> str:
        async with async_openai_client(base_url, api_key) as client:
            stream = await client.responses.create(
                model=model, input=HELLO, max_output_tokens=MAX_TOKENS, stream=True
            )
            return "".join(
                [e.delta async for e in stream if e.type == "response.output_text.delta"]
            )

    return answer(run_async(run()))


@call("openai", "AsyncOpenAI responses.stream helper")
def openai_async_responses_stream_helper(base_url: str, api_key: str, model: str) -> str:
    async def run() -> str:
        async with (
            async_openai_client(base_url, api_key) as client,
            client.responses.stream(
                model=model, input=HELLO, max_output_tokens=MAX_TOKENS
            ) as stream,
        ):
            async for _event in stream:
                pass
            final = await stream.get_final_response()
            return final.output_text

    return answer(run_async(run()))


@call("openai", "responses.create store=True, then responses.retrieve")
def openai_responses_retrieve(base_url: str, api_key: str, model: str) -> str:
    client = openai_client(base_url, api_key)
    created = client.responses.create(
        model=model, input=HELLO, max_output_tokens=MAX_TOKENS, store=True
    )
    fetched = client.responses.retrieve(created.id)
    expect(fetched.id == created.id, "another response came back")
    return answer(fetched.output_text)


@call("openai", "responses.create store=True, then previous_response_id")
def openai_responses_previous(base_url: str, api_key: str, model: str) -> str:
    client = openai_client(base_url, api_key)
    first = client.responses.create(
        model=model, input="My name is Ada.", max_output_tokens=MAX_TOKENS, store=True
    )
    second = client.responses.create(
        model=model,
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=MAX_TOKENS,
    )
    expect(second.previous_response_id == first.id, "previous_response_id not echoed")
    return answer(second.output_text)


@call("openai", "responses.create previous_response_id, stream")
def openai_responses_previous_stream(base_url: str, api_key: str, model: str) -> str:
    client = openai_client(base_url, api_key)
    first = client.responses.create(
        model=model, input="My name is Ada.", max_output_tokens=MAX_TOKENS, store=True
    )
    stream = client.responses.create(
        model=model,
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=MAX_TOKENS,
        stream=True,
    )
    return answer("".join(e.delta for e in stream if e.type == "response.output_text.delta"))


@call("openai", "responses.input_items.list")
def openai_responses_input_items(base_url: str, api_key: str, model: str) -> str:
    client = openai_client(base_url, api_key)
    created = client.responses.create(
        model=model, input=HELLO, max_output_tokens=MAX_TOKENS, store=True
    )
    items = list(client.responses.input_items.list(created.id))
    expect(items, "no input items")
    return answer(f"{len(items)} input items")


@call("openai", "responses.delete")
def openai_responses_delete(base_url: str, api_key: str, model: str) -> str:
    client = openai_client(base_url, api_key)
    created = client.responses.create(
        model=model, input=HELLO, max_output_tokens=MAX_TOKENS, store=True
    )
    client.responses.delete(created.id)
    return answer(f"deleted {created.id}")


@call("openai", "responses.create background=True, then retrieve")
def openai_responses_background(base_url: str, api_key: str, model: str) -> str:
    import time

    client = openai_client(base_url, api_key)
    created = client.responses.create(
        model=model, input=HELLO, max_output_tokens=MAX_TOKENS, background=True, store=True
    )
    deadline = time.monotonic() + 30
    response = created
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.2)
        response = client.responses.retrieve(created.id)
    expect(response.status in ("completed", "incomplete"), f"status {response.status}")
    return answer(response.output_text)


# --- openai-agents ----------------------------------------------------------------------------

# The Agents SDK takes a Responses answer that ends `incomplete` (the token limit) as an error,
# and a random-weight model never stops by itself: its Responses calls pass vLLM's `stop`
# extension (greedy, so every column sees the same text) to end with `completed`.
AGENTS_RESPONSES_SETTINGS: dict[str, Any] = {
    "temperature": 0,
    "max_tokens": 128,
    "extra_body": {"stop": [" "]},  # a tool call's compact JSON has no space
}


def agents_run(
    base_url: str,
    api_key: str,
    model: str,
    *,
    responses: bool,
    stream: bool = False,
    settings: dict[str, Any] | None = None,
    **agent: Any,
) -> Any:
    """`Runner.run` (or `run_streamed`, its text deltas checked) of an agent on `model`: the
    Responses model (the SDK's default, through OpenAIProvider) or OpenAIChatCompletionsModel;
    tracing off (it would post traces to OpenAI). `settings` add to the ModelSettings."""
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Runner
    from agents.models.openai_provider import OpenAIProvider

    base = AGENTS_RESPONSES_SETTINGS if responses else {"max_tokens": MAX_TOKENS}
    model_settings = ModelSettings(**{**base, **(settings or {})})
    prompt = WEATHER_QUESTION if "tools" in agent else HELLO

    async def run() -> Any:
        client = async_openai_client(base_url, api_key)
        try:
            chosen: Any = model if responses else OpenAIChatCompletionsModel(model, client)
            config = RunConfig(
                model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True
            )
            built = Agent(
                name="assistant",
                instructions=SYSTEM,
                model=chosen,
                model_settings=model_settings,
                **agent,
            )
            if not stream:
                return await Runner.run(built, prompt, run_config=config, max_turns=4)
            result = Runner.run_streamed(built, prompt, run_config=config, max_turns=4)
            deltas = [
                event.data.delta
                async for event in result.stream_events()
                if event.type == "raw_response_event"
                and isinstance(getattr(event.data, "delta", None), str)
            ]
            expect("".join(deltas), "no text deltas in the stream")
            return result
        finally:
            await client.close()

    return run_async(run())


def weather_tool() -> Any:
    from agents import function_tool

    return function_tool(get_weather)


def agents_tool_turn(result: Any) -> str:
    """The tool call of an agent run that called get_weather and then answered."""
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    expect(calls, f"no tool call in {[item.type for item in result.new_items]}")
    raw = calls[0].raw_item
    name = raw.name if hasattr(raw, "name") else raw.get("name")
    arguments = raw.arguments if hasattr(raw, "arguments") else raw.get("arguments")
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    expect(outputs, "the tool's output was not sent back")
    return tool_call(name, arguments) + " -> " + answer(result.final_output)


FORCED_TOOL = {"tool_choice": "required", "parallel_tool_calls": False}


@call("openai-agents", "Runner.run, default Responses model")
def agents_responses(base_url: str, api_key: str, model: str) -> str:
    return answer(agents_run(base_url, api_key, model, responses=True).final_output)


@call("openai-agents", "Runner.run, OpenAIChatCompletionsModel")
def agents_chat(base_url: str, api_key: str, model: str) -> str:
    return answer(agents_run(base_url, api_key, model, responses=False).final_output)


@call("openai-agents", "Runner.run, Responses model, tool call turn")
def agents_responses_tool(base_url: str, api_key: str, model: str) -> str:
    result = agents_run(
        base_url, api_key, model, responses=True, settings=FORCED_TOOL, tools=[weather_tool()]
    )
    return agents_tool_turn(result)


@call("openai-agents", "Runner.run, chat model, tool call turn")
def agents_chat_tool(base_url: str, api_key: str, model: str) -> str:
    settings = {**FORCED_TOOL, "max_tokens": 64}
    result = agents_run(
        base_url, api_key, model, responses=False, settings=settings, tools=[weather_tool()]
    )
    return agents_tool_turn(result)


@call("openai-agents", "Runner.run, Responses model, structured output")
def agents_responses_structured(base_url: str, api_key: str, model: str) -> str:
    result = agents_run(
        base_url,
        api_key,
        model,
        responses=True,
        settings={"extra_body": None},  # guided JSON ends by itself
        output_type=Weather,
    )
    expect(isinstance(result.final_output, Weather), f"output {result.final_output!r:.80}")
    return answer(result.final_output.city)


@call("openai-agents", "Runner.run_streamed, default Responses model")
def agents_responses_streamed(base_url: str, api_key: str, model: str) -> str:
    result = agents_run(base_url, api_key, model, responses=True, stream=True)
    return answer(result.final_output)


@call("openai-agents", "Runner.run_streamed, OpenAIChatCompletionsModel")
def agents_chat_streamed(base_url: str, api_key: str, model: str) -> str:
    result = agents_run(base_url, api_key, model, responses=False, stream=True)
    return answer(result.final_output)


# --- langchain-openai -------------------------------------------------------------------------


def chat_openai(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    from langchain_openai import ChatOpenAI

    defaults: dict[str, Any] = {"max_tokens": MAX_TOKENS, "max_retries": 0, "timeout": TIMEOUT_S}
    return ChatOpenAI(
        model=model, base_url=base_url + "/v1", api_key=api_key, **{**defaults, **options}
    )


def langchain_tool_call(message: Any) -> str:
    expect(message.tool_calls, f"no tool calls in {message!r:.120}")
    return tool_call(message.tool_calls[0]["name"], message.tool_calls[0]["args"])


def langchain_text(message: Any) -> str:
    """A LangChain message's text (Responses content comes as a list of blocks)."""
    return answer(message.text if isinstance(message.text, str) else message.text())


@call("langchain-openai", "ChatOpenAI.invoke")
def langchain_openai_invoke(base_url: str, api_key: str, model: str) -> str:
    return langchain_text(chat_openai(base_url, api_key, model).invoke(HELLO))


@call("langchain-openai", "ChatOpenAI.invoke, system + multi-turn, temperature 0")
def langchain_openai_messages(base_url: str, api_key: str, model: str) -> str:
    messages = [("system", SYSTEM)] + [(m["role"], m["content"]) for m in MULTI_TURN]
    return langchain_text(chat_openai(base_url, api_key, model, temperature=0).invoke(messages))


@call("langchain-openai", "ChatOpenAI.stream")
def langchain_openai_stream(base_url: str, api_key: str, model: str) -> str:
    chunks = list(chat_openai(base_url, api_key, model).stream(HELLO))
    return answer("".join(c.text if isinstance(c.text, str) else c.text() for c in chunks))


@call("langchain-openai", "ChatOpenAI.ainvoke")
def langchain_openai_ainvoke(base_url: str, api_key: str, model: str) -> str:
    return langchain_text(run_async(chat_openai(base_url, api_key, model).ainvoke(HELLO)))


@call("langchain-openai", "ChatOpenAI.batch")
def langchain_openai_batch(base_url: str, api_key: str, model: str) -> str:
    messages = chat_openai(base_url, api_key, model).batch([HELLO, "Name a colour."])
    return answer(" | ".join(langchain_text(m) for m in messages))


@call("langchain-openai", "ChatOpenAI.bind_tools, tool_choice required")
def langchain_openai_tools(base_url: str, api_key: str, model: str) -> str:
    llm = chat_openai(base_url, api_key, model, max_tokens=64)
    bound = llm.bind_tools([get_weather], tool_choice="required", parallel_tool_calls=False)
    return langchain_tool_call(bound.invoke(WEATHER_QUESTION))


@call("langchain-openai", "ChatOpenAI.with_structured_output, json_schema")
def langchain_openai_structured(base_url: str, api_key: str, model: str) -> str:
    llm = chat_openai(base_url, api_key, model, max_tokens=32)
    result = llm.with_structured_output(Weather, method="json_schema").invoke(WEATHER_QUESTION)
    expect(isinstance(result, Weather), f"result {result!r:.80}")
    return answer(result.city)


@call("langchain-openai", "ChatOpenAI(use_responses_api=True).invoke")
def langchain_openai_responses(base_url: str, api_key: str, model: str) -> str:
    llm = chat_openai(base_url, api_key, model, use_responses_api=True)
    return langchain_text(llm.invoke(HELLO))


@call("langchain-openai", "ChatOpenAI(use_responses_api=True).stream")
def langchain_openai_responses_stream(base_url: str, api_key: str, model: str) -> str:
    llm = chat_openai(base_url, api_key, model, use_responses_api=True)
    chunks = list(llm.stream(HELLO))
    return answer("".join(c.text if isinstance(c.text, str) else c.text() for c in chunks))


@call("langchain-openai", "ChatOpenAI(use_responses_api=True).bind_tools")
def langchain_openai_responses_tools(base_url: str, api_key: str, model: str) -> str:
    llm = chat_openai(base_url, api_key, model, use_responses_api=True, max_tokens=64)
    bound = llm.bind_tools([get_weather], tool_choice="required", parallel_tool_calls=False)
    return langchain_tool_call(bound.invoke(WEATHER_QUESTION))


@call("langchain-openai", "ChatOpenAI(use_responses_api=True, use_previous_response_id)")
def langchain_openai_previous_response(base_url: str, api_key: str, model: str) -> str:
    from langchain_core.messages import HumanMessage

    llm = chat_openai(
        base_url, api_key, model, use_responses_api=True, use_previous_response_id=True
    )
    first = llm.invoke([HumanMessage("My name is Ada.")])
    second = llm.invoke([HumanMessage("My name is Ada."), first, HumanMessage("My name?")])
    return langchain_text(second)


# --- anthropic SDK ----------------------------------------------------------------------------


def anthropic_client(base_url: str, api_key: str) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=TIMEOUT_S)


def async_anthropic_client(base_url: str, api_key: str) -> Any:
    import anthropic

    return anthropic.AsyncAnthropic(
        base_url=base_url, api_key=api_key, max_retries=0, timeout=TIMEOUT_S
    )


def message(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    """One `messages.create` with the anthropic SDK; `options` add to or replace the defaults."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": HELLO}],
        **options,
    }
    return anthropic_client(base_url, api_key).messages.create(**body)


def message_text(result: Any) -> str:
    return answer("".join(block.text for block in result.content if block.type == "text"))


def tool_use_of(result: Any) -> str:
    uses = [block for block in result.content if block.type == "tool_use"]
    expect(uses, f"no tool_use block in {[block.type for block in result.content]}")
    return tool_call(uses[0].name, uses[0].input)


@call("anthropic", "messages.create")
def anthropic_create(base_url: str, api_key: str, model: str) -> str:
    return message_text(message(base_url, api_key, model))


@call("anthropic", "messages.create, system prompt")
def anthropic_system(base_url: str, api_key: str, model: str) -> str:
    return message_text(message(base_url, api_key, model, system=SYSTEM))


@call("anthropic", "messages.create, multi-turn, temperature 0 (extra_body)")
def anthropic_multi_turn(base_url: str, api_key: str, model: str) -> str:
    # anthropic 2.x dropped `temperature` and `top_p` from messages.create's arguments
    greedy = {"temperature": 0}
    return message_text(message(base_url, api_key, model, messages=MULTI_TURN, extra_body=greedy))


@call("anthropic", "messages.create, stop_sequences + top_p (extra_body)")
def anthropic_sampling(base_url: str, api_key: str, model: str) -> str:
    result = message(base_url, api_key, model, stop_sequences=["\n\n"], extra_body={"top_p": 0.9})
    return message_text(result)


@call("anthropic", "messages.create, usage and model name")
def anthropic_usage(base_url: str, api_key: str, model: str) -> str:
    result = message(base_url, api_key, model)
    expect(result.usage.input_tokens > 0 and result.usage.output_tokens > 0, "no usage")
    expect(result.model == model, f"answer names model {result.model!r}, not {model!r}")
    return answer(f"{result.usage.input_tokens} in, {result.usage.output_tokens} out")


@call("anthropic", "messages.create, stream=True")
def anthropic_stream_raw(base_url: str, api_key: str, model: str) -> str:
    events = list(message(base_url, api_key, model, stream=True))
    expect(events[-1].type == "message_stop", f"last event {events[-1].type}")
    started = events[0].message.model if events[0].type == "message_start" else None
    expect(started == model, f"message_start names model {started!r}, not {model!r}")
    return answer(
        "".join(
            e.delta.text
            for e in events
            if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
    )


@call("anthropic", "messages.stream helper")
def anthropic_stream(base_url: str, api_key: str, model: str) -> str:
    client = anthropic_client(base_url, api_key)
    with client.messages.stream(
        model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": HELLO}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expect(message_text(final) == text, "final text differs from the stream")
    return answer(text)


@call("anthropic", "messages.count_tokens")
def anthropic_count_tokens(base_url: str, api_key: str, model: str) -> str:
    counted = anthropic_client(base_url, api_key).messages.count_tokens(
        model=model, messages=[{"role": "user", "content": HELLO}]
    )
    expect(counted.input_tokens > 0, f"{counted.input_tokens} tokens")
    return answer(f"{counted.input_tokens} tokens")


@call("anthropic", "messages.create, tool_choice any")
def anthropic_tools_any(base_url: str, api_key: str, model: str) -> str:
    result = message(
        base_url,
        api_key,
        model,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        max_tokens=64,
    )
    return tool_use_of(result)


@call("anthropic", "messages.create, tool_choice tool (named)")
def anthropic_tools_named(base_url: str, api_key: str, model: str) -> str:
    result = message(
        base_url,
        api_key,
        model,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
        max_tokens=64,
    )
    return tool_use_of(result)


@call("anthropic", "messages.create, tool_result turn")
def anthropic_tool_result(base_url: str, api_key: str, model: str) -> str:
    messages = [
        {"role": "user", "content": WEATHER_QUESTION},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny."}],
        },
    ]
    return message_text(message(base_url, api_key, model, messages=messages, tools=ANTHROPIC_TOOLS))


@call("anthropic", "messages.create, key as Bearer (auth_token)")
def anthropic_bearer(base_url: str, api_key: str, model: str) -> str:
    import anthropic

    client = anthropic.Anthropic(
        base_url=base_url, auth_token=api_key, max_retries=0, timeout=TIMEOUT_S
    )
    result = client.messages.create(
        model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": HELLO}]
    )
    return message_text(result)


@call("anthropic", "AsyncAnthropic messages.create")
def anthropic_async_create(base_url: str, api_key: str, model: str) -> str:
    async def run() -> Any:
        async with async_anthropic_client(base_url, api_key) as client:
            return await client.messages.create(
                model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": HELLO}]
            )

    return message_text(run_async(run()))


@call("anthropic", "AsyncAnthropic messages.stream")
def anthropic_async_stream(base_url: str, api_key: str, model: str) -> str:
    async def run() -> str:
        async with (
            async_anthropic_client(base_url, api_key) as client,
            client.messages.stream(
                model=model, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": HELLO}]
            ) as stream,
        ):
            return "".join([text async for text in stream.text_stream])

    return answer(run_async(run()))


@call("anthropic", "messages.create, unknown model raises NotFoundError")
def anthropic_unknown_model(base_url: str, api_key: str, model: str) -> str:
    import anthropic

    try:
        message(base_url, api_key, model + "-nonexistent")
    except anthropic.NotFoundError as error:
        return answer(f"NotFoundError {error.status_code}")
    raise WrongAnswer("an unknown model was served")


# --- langchain-anthropic ----------------------------------------------------------------------


def chat_anthropic(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    from langchain_anthropic import ChatAnthropic

    defaults: dict[str, Any] = {"max_tokens": MAX_TOKENS, "max_retries": 0, "timeout": TIMEOUT_S}
    return ChatAnthropic(model=model, base_url=base_url, api_key=api_key, **{**defaults, **options})


@call("langchain-anthropic", "ChatAnthropic.invoke")
def langchain_anthropic_invoke(base_url: str, api_key: str, model: str) -> str:
    return langchain_text(chat_anthropic(base_url, api_key, model).invoke(HELLO))


@call("langchain-anthropic", "ChatAnthropic.invoke, system + multi-turn")
def langchain_anthropic_messages(base_url: str, api_key: str, model: str) -> str:
    messages = [("system", SYSTEM)] + [(m["role"], m["content"]) for m in MULTI_TURN]
    return langchain_text(chat_anthropic(base_url, api_key, model).invoke(messages))


@call("langchain-anthropic", "ChatAnthropic.stream")
def langchain_anthropic_stream(base_url: str, api_key: str, model: str) -> str:
    chunks = list(chat_anthropic(base_url, api_key, model).stream(HELLO))
    return answer("".join(c.text if isinstance(c.text, str) else c.text() for c in chunks))


@call("langchain-anthropic", "ChatAnthropic.ainvoke")
def langchain_anthropic_ainvoke(base_url: str, api_key: str, model: str) -> str:
    return langchain_text(run_async(chat_anthropic(base_url, api_key, model).ainvoke(HELLO)))


@call("langchain-anthropic", "ChatAnthropic.bind_tools, tool_choice any")
def langchain_anthropic_tools(base_url: str, api_key: str, model: str) -> str:
    bound = chat_anthropic(base_url, api_key, model, max_tokens=64).bind_tools(
        [get_weather], tool_choice="any", parallel_tool_calls=False
    )
    return langchain_tool_call(bound.invoke(WEATHER_QUESTION))


@call("langchain-anthropic", "ChatAnthropic.get_num_tokens_from_messages")
def langchain_anthropic_count(base_url: str, api_key: str, model: str) -> str:
    from langchain_core.messages import HumanMessage

    llm = chat_anthropic(base_url, api_key, model)
    count = llm.get_num_tokens_from_messages([HumanMessage(HELLO)])
    expect(isinstance(count, int) and count > 0, f"count {count!r}")
    return answer(f"{count} tokens")


# --- litellm ----------------------------------------------------------------------------------


def litellm_module() -> Any:
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def litellm_chat_text(result: Any) -> str:
    return answer(result.choices[0].message.content)


@call("litellm", "completion, hosted_vllm/")
def litellm_hosted_vllm(base_url: str, api_key: str, model: str) -> str:
    result = litellm_module().completion(
        model="hosted_vllm/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        messages=[{"role": "user", "content": HELLO}],
        max_tokens=MAX_TOKENS,
    )
    return litellm_chat_text(result)


@call("litellm", "completion, openai/, system prompt, temperature 0")
def litellm_openai(base_url: str, api_key: str, model: str) -> str:
    result = litellm_module().completion(
        model="openai/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": HELLO}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    return litellm_chat_text(result)


@call("litellm", "completion, hosted_vllm/, stream")
def litellm_stream(base_url: str, api_key: str, model: str) -> str:
    stream = litellm_module().completion(
        model="hosted_vllm/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        messages=[{"role": "user", "content": HELLO}],
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    return answer("".join(chunk.choices[0].delta.content or "" for chunk in stream))


@call("litellm", "completion, hosted_vllm/, tool_choice required")
def litellm_tools(base_url: str, api_key: str, model: str) -> str:
    result = litellm_module().completion(
        model="hosted_vllm/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=CHAT_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=64,
    )
    calls = result.choices[0].message.tool_calls
    expect(calls, "no tool call")
    return tool_call(calls[0].function.name, calls[0].function.arguments)


@call("litellm", "acompletion, hosted_vllm/")
def litellm_acompletion(base_url: str, api_key: str, model: str) -> str:
    result = run_async(
        litellm_module().acompletion(
            model="hosted_vllm/" + model,
            api_base=base_url + "/v1",
            api_key=api_key,
            messages=[{"role": "user", "content": HELLO}],
            max_tokens=MAX_TOKENS,
        )
    )
    return litellm_chat_text(result)


@call("litellm", "text_completion, hosted_vllm/")
def litellm_text_completion(base_url: str, api_key: str, model: str) -> str:
    result = litellm_module().text_completion(
        model="hosted_vllm/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        prompt="def main():",
        max_tokens=MAX_TOKENS,
    )
    return answer(result.choices[0].text)


def litellm_responses_text(response: Any) -> str:
    texts = [
        part.text
        for item in response.output
        if getattr(item, "type", None) == "message"
        for part in item.content
        if getattr(part, "type", None) == "output_text"
    ]
    return answer("".join(texts))


@call("litellm", "responses, hosted_vllm/")
def litellm_responses(base_url: str, api_key: str, model: str) -> str:
    response = litellm_module().responses(
        model="hosted_vllm/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        input=HELLO,
        max_output_tokens=MAX_TOKENS,
    )
    return litellm_responses_text(response)


@call("litellm", "responses, openai/")
def litellm_responses_openai(base_url: str, api_key: str, model: str) -> str:
    response = litellm_module().responses(
        model="openai/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        input=HELLO,
        instructions=SYSTEM,
        max_output_tokens=MAX_TOKENS,
    )
    return litellm_responses_text(response)


@call("litellm", "responses, hosted_vllm/, stream")
def litellm_responses_stream(base_url: str, api_key: str, model: str) -> str:
    stream = litellm_module().responses(
        model="hosted_vllm/" + model,
        api_base=base_url + "/v1",
        api_key=api_key,
        input=HELLO,
        max_output_tokens=MAX_TOKENS,
        stream=True,
    )
    deltas = [
        event.delta
        for event in stream
        if getattr(event, "type", None) == "response.output_text.delta"
    ]
    return answer("".join(deltas))


@call("litellm", "completion, anthropic/ at the base URL")
def litellm_anthropic(base_url: str, api_key: str, model: str) -> str:
    result = litellm_module().completion(
        model="anthropic/" + model,
        api_base=base_url,
        api_key=api_key,
        messages=[{"role": "user", "content": HELLO}],
        max_tokens=MAX_TOKENS,
    )
    return litellm_chat_text(result)


@call("litellm", "completion, anthropic/, stream")
def litellm_anthropic_stream(base_url: str, api_key: str, model: str) -> str:
    stream = litellm_module().completion(
        model="anthropic/" + model,
        api_base=base_url,
        api_key=api_key,
        messages=[{"role": "user", "content": HELLO}],
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    return answer("".join(chunk.choices[0].delta.content or "" for chunk in stream))


@call("litellm", "anthropic.messages.create, anthropic/")
def litellm_anthropic_messages(base_url: str, api_key: str, model: str) -> str:
    litellm = litellm_module()
    result = run_async(
        litellm.anthropic.messages.acreate(
            model="anthropic/" + model,
            api_base=base_url,
            api_key=api_key,
            messages=[{"role": "user", "content": HELLO}],
            max_tokens=MAX_TOKENS,
        )
    )
    content = result["content"] if isinstance(result, dict) else result.content
    texts = [b["text"] if isinstance(b, dict) else b.text for b in content]
    return answer("".join(texts))


# --- llama-index ------------------------------------------------------------------------------


def openai_like(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    from llama_index.llms.openai_like import OpenAILike

    defaults: dict[str, Any] = {
        "is_chat_model": True,
        "max_tokens": MAX_TOKENS,
        "context_window": 512,
        "max_retries": 0,
        "timeout": TIMEOUT_S,
    }
    return OpenAILike(
        model=model, api_base=base_url + "/v1", api_key=api_key, **{**defaults, **options}
    )


@call("llama-index", "OpenAILike.complete (completions)")
def llama_index_complete(base_url: str, api_key: str, model: str) -> str:
    llm = openai_like(base_url, api_key, model, is_chat_model=False)
    return answer(llm.complete("def main():").text)


@call("llama-index", "OpenAILike.chat")
def llama_index_chat(base_url: str, api_key: str, model: str) -> str:
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=HELLO)]
    return answer(openai_like(base_url, api_key, model).chat(messages).message.content)


@call("llama-index", "OpenAILike.stream_chat")
def llama_index_stream_chat(base_url: str, api_key: str, model: str) -> str:
    from llama_index.core.llms import ChatMessage

    stream = openai_like(base_url, api_key, model).stream_chat(
        [ChatMessage(role="user", content=HELLO)]
    )
    return answer("".join(chunk.delta or "" for chunk in stream))


@call("llama-index", "OpenAILike.stream_complete")
def llama_index_stream_complete(base_url: str, api_key: str, model: str) -> str:
    llm = openai_like(base_url, api_key, model, is_chat_model=False)
    return answer("".join(chunk.delta or "" for chunk in llm.stream_complete("def main():")))


@call("llama-index", "OpenAILike.acomplete (chat)")
def llama_index_acomplete(base_url: str, api_key: str, model: str) -> str:
    return answer(run_async(openai_like(base_url, api_key, model).acomplete(HELLO)).text)


@call("llama-index", "OpenAILike.chat_with_tools, tool_required")
def llama_index_tools(base_url: str, api_key: str, model: str) -> str:
    from llama_index.core.tools import FunctionTool

    llm = openai_like(base_url, api_key, model, is_function_calling_model=True, max_tokens=64)
    tool = FunctionTool.from_defaults(fn=get_weather, fn_schema=Weather)
    response = llm.chat_with_tools([tool], user_msg=WEATHER_QUESTION, tool_required=True)
    calls = llm.get_tool_calls_from_response(response, error_on_no_tool_call=False)
    expect(calls, "no tool call")
    return tool_call(calls[0].tool_name, calls[0].tool_kwargs)


# --- instructor -------------------------------------------------------------------------------


@call("instructor", "from_openai, Mode.TOOLS")
def instructor_tools(base_url: str, api_key: str, model: str) -> str:
    import instructor

    client = instructor.from_openai(openai_client(base_url, api_key), mode=instructor.Mode.TOOLS)
    result = client.chat.completions.create(
        model=model,
        response_model=Weather,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        max_tokens=64,
        max_retries=1,
    )
    return answer(result.city)


@call("instructor", "from_openai, Mode.JSON_SCHEMA")
def instructor_json_schema(base_url: str, api_key: str, model: str) -> str:
    import instructor

    client = instructor.from_openai(
        openai_client(base_url, api_key), mode=instructor.Mode.JSON_SCHEMA
    )
    result = client.chat.completions.create(
        model=model,
        response_model=Weather,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        max_tokens=64,
        max_retries=1,
    )
    return answer(result.city)


@call("instructor", "from_openai, Mode.RESPONSES_TOOLS")
def instructor_responses(base_url: str, api_key: str, model: str) -> str:
    import instructor

    client = instructor.from_openai(
        openai_client(base_url, api_key), mode=instructor.Mode.RESPONSES_TOOLS
    )
    result = client.responses.create(
        model=model,
        response_model=Weather,
        input=[{"role": "user", "content": WEATHER_QUESTION}],
        max_output_tokens=64,
        max_retries=1,
    )
    return answer(result.city)


@call("instructor", "from_anthropic, Mode.ANTHROPIC_TOOLS")
def instructor_anthropic(base_url: str, api_key: str, model: str) -> str:
    import instructor

    client = instructor.from_anthropic(
        anthropic_client(base_url, api_key), mode=instructor.Mode.ANTHROPIC_TOOLS
    )
    result = client.messages.create(
        model=model,
        response_model=Weather,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        max_tokens=64,
        max_retries=1,
    )
    return answer(result.city)


# --- pydantic-ai ------------------------------------------------------------------------------


def pydantic_ai_model(base_url: str, api_key: str, model: str, kind: str) -> Any:
    """A pydantic-ai model of `kind` ("chat", "responses" or "anthropic") at the server."""
    if kind == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(model, provider=AnthropicProvider(base_url=base_url, api_key=api_key))
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=base_url + "/v1", api_key=api_key)
    chosen = OpenAIResponsesModel if kind == "responses" else OpenAIChatModel
    return chosen(model, provider=provider)


def pydantic_agent(
    base_url: str, api_key: str, model: str, kind: str, max_tokens: int = MAX_TOKENS, **agent: Any
) -> Any:
    from pydantic_ai import Agent

    built = pydantic_ai_model(base_url, api_key, model, kind)
    # greedy, one call at a time: else a forced tool call may repeat until max_tokens
    settings = {"max_tokens": max_tokens, "temperature": 0, "parallel_tool_calls": False}
    return Agent(built, instructions=SYSTEM, model_settings=settings, **agent)


def pydantic_structured(base_url: str, api_key: str, model: str, kind: str) -> str:
    agent = pydantic_agent(base_url, api_key, model, kind, max_tokens=200, output_type=Weather)
    result = agent.run_sync(WEATHER_QUESTION)
    expect(isinstance(result.output, Weather), f"output {result.output!r:.80}")
    return answer(result.output.city)


def pydantic_stream(base_url: str, api_key: str, model: str, kind: str) -> str:
    async def run() -> str:
        agent = pydantic_agent(base_url, api_key, model, kind)
        async with agent.run_stream(HELLO) as result:
            return "".join([delta async for delta in result.stream_text(delta=True)])

    return answer(run_async(run()))


@call("pydantic-ai", "OpenAIChatModel, run_sync")
def pydantic_chat(base_url: str, api_key: str, model: str) -> str:
    return answer(pydantic_agent(base_url, api_key, model, "chat").run_sync(HELLO).output)


@call("pydantic-ai", "OpenAIChatModel, run_stream")
def pydantic_chat_stream(base_url: str, api_key: str, model: str) -> str:
    return pydantic_stream(base_url, api_key, model, "chat")


@call("pydantic-ai", "OpenAIChatModel, structured output (tool)")
def pydantic_chat_structured(base_url: str, api_key: str, model: str) -> str:
    return pydantic_structured(base_url, api_key, model, "chat")


@call("pydantic-ai", "OpenAIResponsesModel, run_sync")
def pydantic_responses(base_url: str, api_key: str, model: str) -> str:
    return answer(pydantic_agent(base_url, api_key, model, "responses").run_sync(HELLO).output)


@call("pydantic-ai", "OpenAIResponsesModel, run_stream")
def pydantic_responses_stream(base_url: str, api_key: str, model: str) -> str:
    return pydantic_stream(base_url, api_key, model, "responses")


@call("pydantic-ai", "OpenAIResponsesModel, structured output (tool)")
def pydantic_responses_structured(base_url: str, api_key: str, model: str) -> str:
    return pydantic_structured(base_url, api_key, model, "responses")


@call("pydantic-ai", "AnthropicModel, run_sync")
def pydantic_anthropic(base_url: str, api_key: str, model: str) -> str:
    return answer(pydantic_agent(base_url, api_key, model, "anthropic").run_sync(HELLO).output)


# --- raw HTTP (what curl users and some SDK helpers send) -------------------------------------


def post(base_url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """POST `body` as JSON; the decoded JSON answer, raising on an error status."""
    response = httpx.post(base_url + path, json=body, headers=headers, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def bearer(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


@call("http", "POST /tokenize (prompt)")
def http_tokenize(base_url: str, api_key: str, model: str) -> str:
    result = post(base_url, "/tokenize", {"model": model, "prompt": HELLO}, bearer(api_key))
    expect(result.get("count", 0) > 0, f"answer {result!r:.120}")
    return answer(f"{result['count']} tokens")


@call("http", "POST /tokenize (messages)")
def http_tokenize_messages(base_url: str, api_key: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": HELLO}]}
    result = post(base_url, "/tokenize", body, bearer(api_key))
    expect(result.get("count", 0) > 0, f"answer {result!r:.120}")
    return answer(f"{result['count']} tokens")


@call("http", "POST /detokenize")
def http_detokenize(base_url: str, api_key: str, model: str) -> str:
    tokens = post(base_url, "/tokenize", {"model": model, "prompt": HELLO}, bearer(api_key))
    result = post(
        base_url, "/detokenize", {"model": model, "tokens": tokens["tokens"]}, bearer(api_key)
    )
    return answer(result.get("prompt"))


@call("http", "POST /v1/messages with x-api-key")
def http_messages_x_api_key(base_url: str, api_key: str, model: str) -> str:
    body = {
        "model": model,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": HELLO}],
    }
    headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    result = post(base_url, "/v1/messages", body, headers)
    return answer("".join(block.get("text", "") for block in result["content"]))


@call("http", "POST /v1/chat/completions with x-api-key")
def http_chat_x_api_key(base_url: str, api_key: str, model: str) -> str:
    body = {
        "model": model,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": HELLO}],
    }
    result = post(base_url, "/v1/chat/completions", body, {"x-api-key": api_key})
    return answer(result["choices"][0]["message"]["content"])
