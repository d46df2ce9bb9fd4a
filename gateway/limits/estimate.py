"""How many tokens to reserve before the upstream answers, and how many to settle after.

The gateway has no tokenizer (it fronts many models, and tokenizing every prompt would cost
more than the rest of the hot path), so the prompt is estimated from its length: one token
per CHARS_PER_TOKEN characters of text, plus a few tokens per chat message for the template's
role markers. Token-id prompts count exactly. The completion part is the most the request
may generate (each surface's codec reads its own fields: gateway/surfaces/).
The estimate only decides admission; settlement replaces it with the usage vLLM reports, so
its error lasts one request. docs/limits.md (token accounting) has the measured error.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4  # BPE tokenizers on English prose; code and other scripts run denser
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators a chat template adds per message
REPLY_PRIMING_TOKENS = 3  # the assistant header that opens the answer
# Keeps every count a small exact integer for Redis (a client may send max_tokens=10**30).
MAX_TOKENS = 10**12


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


def text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def content_chars(content: Any) -> int:
    """The characters of a message's content: a string, or its text parts."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def input_tokens(value: Any) -> int:
    """A completion prompt or embedding input: text, token ids, or a list of either."""
    if isinstance(value, str):
        return 1 + text_tokens(len(value))
    if value and isinstance(value[0], int):
        return len(value)
    return sum(input_tokens(item) for item in value)
