"""Reading generation request bodies into one job, with vLLM's checks: unknown model, token
limits beyond max_model_len, prompt too long, stream_options without stream, n, and the
pydantic-style 400s for missing or mistyped fields.

/v1/responses and /v1/messages read their conversation into chat messages, as vLLM renders
both through the chat template: the same conversation gets the same prompt size and the
same answer on every surface.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, repeat

from vllm_server.standin import text
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import (
    VLLMError,
    bad_parameter,
    bad_request,
    missing_field,
    validation_error,
    wrong_type,
)

# below it, vLLM samples greedily
_GREEDY_TEMPERATURE = 1e-5

# (a decoding step starts with it, choice index, piece, finish_reason on the choice's last
# token, the choice's tokens so far)
Token = tuple[bool, int, str, str | None, int]


@dataclass
class Job:
    """A validated generation request: who answers, what, and how it is delivered.

    `answers` are the choices in index order; they are generated side by side, as vLLM
    runs the n choices and the prompts of a batch together."""

    model: str
    adapter: str | None
    prompt_tokens: int
    max_tokens: int
    answers: list[text.Answer]
    stream: bool
    include_usage: bool
    continuous_usage: bool
    arrival: float

    @property
    def completion_tokens(self) -> int:
        return sum(answer.completion_tokens for answer in self.answers)

    @property
    def steps(self) -> int:
        """Decoding steps: the longest choice's tokens."""
        return max(answer.completion_tokens for answer in self.answers)

    def schedule(self) -> Iterable[Token]:
        """Every choice's tokens in the order they stream: step by step, each step one token
        of every choice still running, in index order."""
        if len(self.answers) == 1:
            # every chat stream of the load benchmarks: zipped from C iterators, so that no
            # Python code runs per token
            (answer,) = self.answers
            length = len(answer.pieces)
            finish_reasons = (*repeat(None, length - 1), answer.finish_reason)
            return zip(
                chain((False,), repeat(True)),
                repeat(0),
                answer.pieces,
                finish_reasons,
                range(1, length + 1),
                strict=False,
            )
        tokens: list[Token] = []
        for step in range(self.steps):
            running = [
                (index, answer)
                for index, answer in enumerate(self.answers)
                if step < len(answer.pieces)
            ]
            for position, (index, answer) in enumerate(running):
                last = step == len(answer.pieces) - 1
                finish_reason = answer.finish_reason if last else None
                pause = step > 0 and position == 0
                tokens.append((pause, index, answer.pieces[step], finish_reason, step + 1))
        return tokens


@dataclass(frozen=True)
class _Limit:
    """The requested token limit and the name vLLM reports it under when too large."""

    value: object
    param: str


@dataclass(frozen=True)
class _Delivery:
    stream: bool
    include_usage: bool = False
    continuous_usage: bool = False


def chat_job(engine: Engine, body: dict) -> Job:
    messages = chat_messages(body)
    _refuse_tool_choice(body.get("tool_choice"))
    limit = _Limit(body.get("max_tokens"), "max_tokens")
    if body.get("max_completion_tokens") is not None:
        limit = _Limit(body["max_completion_tokens"], "max_completion_tokens")
    prompt = (text.chat_prompt_key(messages), text.chat_prompt_tokens(messages))
    return _job(engine, body, [prompt], limit, _stream_options(body), _choices(body))


def _refuse_tool_choice(choice: object) -> None:
    """The stand-in runs no tools: it answers as vLLM 0.32 started without
    --enable-auto-tool-choice and --tool-call-parser does, for any tool_choice but "none"."""
    if choice is None or choice == "none":
        return
    if choice == "auto":
        raise bad_request(
            '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
        )
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        described = f'function "{name}"'
    else:
        described = f'"{choice}"'
    raise bad_request(f"tool_choice={described} requires --tool-call-parser to be set")


def completion_job(engine: Engine, body: dict) -> Job:
    prompt = body.get("prompt")
    if prompt is None or prompt == "" or prompt == []:
        raise missing_field("prompt", body)
    limit = _Limit(body.get("max_tokens"), "max_tokens")
    return _job(
        engine, body, _completion_prompts(prompt), limit, _stream_options(body), _choices(body)
    )


def responses_job(engine: Engine, body: dict) -> Job:
    messages = responses_messages(body)
    prompt = (text.chat_prompt_key(messages), text.chat_prompt_tokens(messages))
    limit = _Limit(body.get("max_output_tokens"), "max_output_tokens")
    return _job(engine, body, [prompt], limit, _Delivery(body.get("stream") is True), 1)


def messages_job(engine: Engine, body: dict) -> Job:
    """An Anthropic /v1/messages request; vLLM runs it as a chat completion, which streams
    with continuous usage (message_start carries the input tokens)."""
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise missing_field("max_tokens", body)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise wrong_type("max_tokens", "int", max_tokens)
    if max_tokens < 1:
        raise validation_error(
            ("body", "max_tokens"),
            "value_error",
            "Value error, max_tokens must be positive",
            max_tokens,
        )
    messages = anthropic_messages(body)
    prompt = (text.chat_prompt_key(messages), text.chat_prompt_tokens(messages))
    stream = body.get("stream") is True
    delivery = _Delivery(stream, include_usage=stream, continuous_usage=stream)
    return _job(engine, body, [prompt], _Limit(max_tokens, "max_completion_tokens"), delivery, 1)


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if messages is None:
        raise missing_field("messages", body)
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise wrong_type("messages", "list", messages)
    return messages


def responses_messages(body: dict) -> list[dict]:
    """`instructions` as the system message, then `input`: a user string, or a list of
    items of which those with a role are messages (other items carry no text here)."""
    if "input" not in body:
        raise missing_field("input", body)
    items = body["input"]
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise wrong_type("input", "list", items)
    messages = [item for item in items if isinstance(item, dict) and "role" in item]
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        return [{"role": "system", "content": instructions}, *messages]
    return messages


def anthropic_messages(body: dict) -> list[dict]:
    """Anthropic's top-level `system` (a string or text blocks) first, then `messages`."""
    messages = chat_messages(body)
    system = text.message_text(body.get("system"))
    return [{"role": "system", "content": system}, *messages] if system else messages


def _stream_options(body: dict) -> _Delivery:
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is None:
        return _Delivery(stream)
    if not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
            "stream_options",
        )
    if not isinstance(options, dict):
        raise wrong_type("stream_options", "dictionary", options)
    include_usage = options.get("include_usage") is True
    continuous_usage = include_usage and options.get("continuous_usage_stats") is True
    return _Delivery(stream, include_usage, continuous_usage)


# vLLM's default VLLM_MAX_N_SEQUENCES (vllm/envs.py), checked in SamplingParams
MAX_N_SEQUENCES = 16384


def _choices(body: dict) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise wrong_type("n", "int", n)
    if n < 1:
        raise bad_request(f"n must be at least 1, got {n}.")
    if n > MAX_N_SEQUENCES:
        raise bad_request(
            f"n must be at most {MAX_N_SEQUENCES}, got {n}. To increase this limit, set the "
            "VLLM_MAX_N_SEQUENCES environment variable."
        )
    temperature = body.get("temperature")
    if n > 1 and isinstance(temperature, int | float) and temperature < _GREEDY_TEMPERATURE:
        raise bad_request(f"n must be 1 when using greedy sampling, got {n}.")
    return n


def _completion_prompts(prompt: object) -> list[tuple[str, int]]:
    """(key, token count) per prompt: a string, token ids, or a list of either (a batch)."""
    if isinstance(prompt, str):
        return [(prompt, text.completion_prompt_tokens(prompt))]
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return [(repr(prompt), text.completion_prompt_tokens(prompt))]
    if isinstance(prompt, list) and all(
        isinstance(p, str) or (isinstance(p, list) and all(isinstance(t, int) for t in p))
        for p in prompt
    ):
        return [pair for p in prompt for pair in _completion_prompts(p)]
    raise wrong_type("prompt", "string", prompt)


def _max_tokens(limit: _Limit, default: int, max_model_len: int) -> int:
    max_tokens = limit.value
    if max_tokens is None:
        return default
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise wrong_type(limit.param, "int", max_tokens)
    if max_tokens < 1:
        raise bad_parameter(
            f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens", max_tokens
        )
    if max_tokens > max_model_len:
        raise bad_parameter(
            f"{limit.param}={max_tokens} cannot be greater than max_model_len={max_model_len}. "
            "Please request fewer output tokens.",
            limit.param,
            max_tokens,
        )
    return max_tokens


def prompt_too_long(prompt_tokens: int, max_model_len: int) -> VLLMError:
    # vLLM stops counting one token past the limit
    reported = min(prompt_tokens, max_model_len + 1)
    return bad_parameter(
        f"This model's maximum context length is {max_model_len} tokens. However, your "
        f"prompt contains at least {reported} input tokens, which exceeds this limit even "
        "without any output tokens. Please reduce the length of the input prompt.",
        "input_tokens",
        reported,
    )


def _job(
    engine: Engine,
    body: dict,
    prompts: list[tuple[str, int]],
    limit: _Limit,
    delivery: _Delivery,
    n: int,
) -> Job:
    """One answer per prompt and choice: choice 0 is the prompt's own answer, later choices
    draw theirs from the prompt and their index, so every choice differs."""
    arrival = time.monotonic()
    config = engine.config
    model, adapter = engine.resolve_model(body.get("model"))
    max_tokens = _max_tokens(limit, config.max_tokens, config.max_model_len)
    answers = []
    for key, prompt_tokens in prompts:
        room = config.max_model_len - prompt_tokens
        if room < 1:
            raise prompt_too_long(prompt_tokens, config.max_model_len)
        ignore_eos = body.get("ignore_eos") is True
        answers += [
            text.answer(
                config.seed,
                model,
                key if choice == 0 else f"{key}\0choice {choice}",
                min(max_tokens, room),
                ignore_eos,
            )
            for choice in range(n)
        ]
    return Job(
        model=model,
        adapter=adapter,
        prompt_tokens=sum(tokens for _, tokens in prompts),
        max_tokens=max_tokens,
        answers=answers,
        stream=delivery.stream,
        include_usage=delivery.include_usage,
        continuous_usage=delivery.continuous_usage,
        arrival=arrival,
    )
