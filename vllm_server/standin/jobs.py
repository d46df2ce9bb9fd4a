"""Reading /v1/chat/completions and /v1/completions bodies into one generation job, with
vLLM's checks: unknown model, max_tokens beyond max_model_len, prompt too long,
stream_options without stream, and the pydantic-style 400s for missing or mistyped fields."""

from __future__ import annotations

import time
from dataclasses import dataclass

from vllm_server.standin import text
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import bad_request, missing_field, wrong_type


@dataclass
class Job:
    """A validated generation request: who answers, what, and how it is delivered."""

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


def chat_job(engine: Engine, body: dict) -> Job:
    messages = body.get("messages")
    if messages is None:
        raise missing_field("messages", body)
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise wrong_type("messages", "list", messages)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    prompt = (text.chat_prompt_key(messages), text.chat_prompt_tokens(messages))
    return _job(engine, body, [prompt], max_tokens)


def completion_job(engine: Engine, body: dict) -> Job:
    prompt = body.get("prompt")
    if prompt is None or prompt == "" or prompt == []:
        raise missing_field("prompt", body)
    return _job(engine, body, _completion_prompts(prompt), body.get("max_tokens"))


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


def _job(engine: Engine, body: dict, prompts: list[tuple[str, int]], max_tokens: object) -> Job:
    arrival = time.monotonic()
    config = engine.config
    model, adapter = engine.resolve_model(body.get("model"))
    if max_tokens is None:
        max_tokens = config.max_tokens
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise wrong_type("max_tokens", "int", max_tokens)
    if max_tokens < 1:
        raise bad_request(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
    if max_tokens > config.max_model_len:
        raise bad_request(
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
            f"maximum context length is {config.max_model_len} tokens.",
            "max_tokens",
        )
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`.", "stream_options"
        )
    if options is not None and not isinstance(options, dict):
        raise wrong_type("stream_options", "dictionary", options)
    # vLLM's StreamOptions defaults include_usage to true once stream_options is given
    include_usage = options is not None and options.get("include_usage", True) is True
    continuous_usage = include_usage and options.get("continuous_usage_stats") is True

    answers = []
    for key, prompt_tokens in prompts:
        room = config.max_model_len - prompt_tokens
        if room < 1:
            raise bad_request(
                f"This model's maximum context length is {config.max_model_len} tokens. "
                f"However, your request has {prompt_tokens} input tokens. Please reduce the "
                "length of the input messages.",
                "input_tokens",
            )
        answers.append(
            text.answer(
                config.seed, model, key, min(max_tokens, room), body.get("ignore_eos") is True
            )
        )
    return Job(
        model=model,
        adapter=adapter,
        prompt_tokens=sum(tokens for _, tokens in prompts),
        max_tokens=max_tokens,
        answers=answers,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous_usage,
        arrival=arrival,
    )
