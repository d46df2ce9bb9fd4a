"""The limiter's answers in OpenAI's shapes: ``x-ratelimit-*`` headers and 429/503 errors.

OpenAI sends, on every response, the limit, what remains and when it resets, for requests and
for tokens (reset as a duration such as ``1s``, ``250ms``, ``6m0s``). Here "reset" is the time
until the oldest admission in the sliding minute leaves it, i.e. until `remaining` grows
again; on a 429 it equals Retry-After. A 429 carries ``retry-after`` (whole seconds, as HTTP
wants) and ``retry-after-ms``, which the openai SDK prefers when present.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from gateway.core.asgi import Headers
from gateway.core.errors import RateLimitError, ServiceUnavailable
from gateway.limits.periods import Period
from gateway.limits.reservation import Kind, LimitExceeded

# A limit's current state for the headers: (limit, remaining, seconds until it grows).
WindowState = tuple[int, int, float]

LIMIT_REQUESTS = b"x-ratelimit-limit-requests"
REMAINING_REQUESTS = b"x-ratelimit-remaining-requests"
RESET_REQUESTS = b"x-ratelimit-reset-requests"
LIMIT_TOKENS = b"x-ratelimit-limit-tokens"
REMAINING_TOKENS = b"x-ratelimit-remaining-tokens"
RESET_TOKENS = b"x-ratelimit-reset-tokens"


def duration_text(seconds: float) -> str:
    """A duration as OpenAI writes it: ``120ms``, ``1.5s``, ``6m0s``."""
    millis = max(0, round(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms"
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{secs}" if minutes else secs


def rate_limit_headers(requests: WindowState | None, tokens: WindowState | None) -> Headers:
    headers: Headers = []
    if requests is not None:
        limit, remaining, reset_s = requests
        headers.append((LIMIT_REQUESTS, str(limit).encode()))
        headers.append((REMAINING_REQUESTS, str(max(0, remaining)).encode()))
        headers.append((RESET_REQUESTS, duration_text(reset_s).encode()))
    if tokens is not None:
        limit, remaining, reset_s = tokens
        headers.append((LIMIT_TOKENS, str(limit).encode()))
        headers.append((REMAINING_TOKENS, str(max(0, remaining)).encode()))
        headers.append((RESET_TOKENS, duration_text(reset_s).encode()))
    return headers


def limit_error(exceeded: LimitExceeded, period: Period) -> RateLimitError:
    """The 429 for a refused request, naming the limit, the scope and when to come back."""
    kind, scope, retry_s = exceeded.kind, exceeded.scope, exceeded.retry_after_s
    numbers = f"limit {exceeded.limit}, used {exceeded.used}, requested {exceeded.requested}"
    code = "rate_limit_exceeded"
    error_type = "tokens" if kind is Kind.TOKENS else "requests"
    headers: dict[str, str] = {}
    if kind.is_budget:
        error_type = code = "insufficient_quota"
        renews_at = period.ends_at(kind is Kind.TOKENS_PER_MONTH)
        renewal = datetime.fromtimestamp(renews_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = (
            f"Token budget exhausted: {kind.words} on {scope.label} ({numbers}). "
            f"It renews at {renewal}."
        )
    elif retry_s is None:
        message = (
            f"Request too large for {kind.words} on {scope.label} ({numbers}): "
            "it can never be admitted; lower max_tokens or shorten the prompt."
        )
    elif kind is Kind.CONCURRENT:
        message = (
            f"Rate limit reached for {kind.words} on {scope.label}: {exceeded.used} in "
            f"flight, limit {exceeded.limit}. Please try again when one has finished."
        )
    else:
        message = (
            f"Rate limit reached for {kind.words} on {scope.label} ({numbers}). "
            f"Please try again in {duration_text(retry_s)}."
        )
    if kind is Kind.REQUESTS or kind is Kind.TOKENS:
        state = (exceeded.limit, exceeded.limit - exceeded.used, retry_s or 0.0)
        window = (
            rate_limit_headers(state, None)
            if kind is Kind.REQUESTS
            else rate_limit_headers(None, state)
        )
        headers.update((name.decode(), value.decode()) for name, value in window)
    if retry_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_s)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry_s * 1000)))
    return RateLimitError(message, error_type, code, headers)


def limiter_unavailable() -> ServiceUnavailable:
    """Fail-closed: the shared limiter cannot say whether the request fits, so it waits."""
    return ServiceUnavailable(
        "The rate limiter is unavailable; please try again shortly.",
        "rate_limiter_unavailable",
        retry_after_s=1,
    )
