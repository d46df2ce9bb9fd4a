"""How many tokens to reserve before the upstream answers, and how many to settle after.

The gateway has no tokenizer (it fronts many models, and tokenizing every prompt would cost
more than the rest of the hot path), so the prompt is estimated from its length: one token
per CHARS_PER_TOKEN characters of text, plus a few tokens per chat message for the template's
role markers. Token-id prompts count exactly. The completion part is the most the request
may generate: max_completion_tokens, else max_tokens, else the configured default, times n.
The estimate only decides admission; settlement replaces it with the usage vLLM reports, so
its error lasts one request. docs/limits.md (token accounting) has the measured error.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.request import InferenceRequest

CHARS_PER_TOKEN = 4  # BPE tokenizers on English prose; code and other scripts run denser
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators a chat template adds per message
REPLY_PRIMING_TOKENS = 3  # the assistant header that opens the answer
# Keeps every count a small exact integer for Redis (a client may send max_tokens=10**30).
MAX_TOKENS = 10**12


def estimate_prompt_tokens(request: InferenceRequest) -> int:
    body = request.body
    if request.endpoint.input_field == "messages":
        chars = 0
        for message in body["messages"]:
            chars += _text_chars(message.get("content"))
            calls = message.get("tool_calls")
            if calls:
                chars += len(orjson.dumps(calls))
        tools = body.get("tools")
        if tools:
            chars += len(orjson.dumps(tools))
        overhead = MESSAGE_OVERHEAD_TOKENS * len(body["messages"]) + REPLY_PRIMING_TOKENS
        return overhead + -(-chars // CHARS_PER_TOKEN)
    return _input_tokens(body[request.endpoint.input_field])


def estimate_tokens(request: InferenceRequest, default_max_tokens: int) -> int:
    """Prompt estimate plus the most the request may generate: what to reserve."""
    prompt = estimate_prompt_tokens(request)
    if request.endpoint.input_field == "input":  # embeddings generate nothing
        return min(prompt, MAX_TOKENS)
    body = request.body
    completion = body.get("max_completion_tokens")
    if completion is None:
        completion = body.get("max_tokens")
    if completion is None:
        completion = default_max_tokens
    choices = body.get("n") or 1
    return min(prompt + max(0, completion) * max(1, choices), MAX_TOKENS)


def estimated_usage(prompt_estimate: int, streamed_events: int) -> dict[str, int]:
    """Usage of a stream cut before vLLM's usage chunk (client gone, upstream broke): the
    prompt estimate and one token per relayed event (vLLM streams about one token per event;
    the role and end events make this a slight overcount), so what was generated is charged."""
    return {
        "prompt_tokens": prompt_estimate,
        "completion_tokens": streamed_events,
        "total_tokens": prompt_estimate + streamed_events,
    }


def tokens_used(usage: dict[str, Any] | None) -> int:
    """What to settle: the request's usage (vLLM's, or `estimated_usage` for a cut stream);
    none at all means nothing was generated."""
    if not usage:
        return 0
    total = usage.get("total_tokens")
    if not isinstance(total, int):
        total = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
    return min(max(0, total), MAX_TOKENS)


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def _input_tokens(value: Any) -> int:
    """A completion prompt or embedding input: text, token ids, or a list of either."""
    if isinstance(value, str):
        return 1 + -(-len(value) // CHARS_PER_TOKEN)
    if value and isinstance(value[0], int):
        return len(value)
    return sum(_input_tokens(item) for item in value)
