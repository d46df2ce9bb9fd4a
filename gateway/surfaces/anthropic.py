"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, which
vLLM serves itself (it runs the messages as a chat completion).

The gateway checks what it reads (model, messages, system, max_tokens, stream) in Anthropic's
words (``max_tokens: Field required``); full validation is vLLM's job. Streams are typed SSE
(``event: <type>`` then ``data: {"type": <type>, ...}``) ended by ``message_stop``; usage is
split over ``message_start`` (input and cache tokens) and ``message_delta`` (output tokens,
and in vLLM's streams the input again), and recorded in chat's shape for the limits and the
ledger. Errors, the gateway's own and vLLM's, leave in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}`` with Anthropic's statuses: the gateway's
503 (a store, the limiter or every replica unavailable, a shutdown) is Anthropic's 529
``overloaded_error``, which its clients retry after Retry-After as they retry any 5xx. The
limiter's x-ratelimit-* headers are sent as anthropic-ratelimit-*, resets as RFC 3339 times.

vLLM takes `cache_salt` on /v1/messages but has no `priority` there (its request model
ignores the field): a tenant's cache stays its own, its priority tier does not apply.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.core.asgi import Headers
from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.filters import ChunkFilter
from gateway.core.request import InferenceRequest, RequestTexts, TextSlot
from gateway.limits.estimate import (
    MAX_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    content_chars,
    text_tokens,
)
from gateway.limits.headers import (
    LIMIT_REQUESTS,
    LIMIT_TOKENS,
    REMAINING_REQUESTS,
    REMAINING_TOKENS,
    RESET_REQUESTS,
    RESET_TOKENS,
)
from gateway.safety.runtime import PolicyRuntime
from gateway.surfaces.anthropic_guard import MessagesGuard
from gateway.surfaces.base import Surface, UsageFilter
from gateway.surfaces.openai import json_object, renamed_body
from gateway.surfaces.typed_events import EVENT_END, event_data, event_type

# Anthropic's status for "temporarily unable to serve"; the gateway's 503 is answered with it.
OVERLOADED = 529
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    OVERLOADED: "overloaded_error",
}
_LIMIT_NAMES = {
    LIMIT_REQUESTS: b"anthropic-ratelimit-requests-limit",
    REMAINING_REQUESTS: b"anthropic-ratelimit-requests-remaining",
    LIMIT_TOKENS: b"anthropic-ratelimit-tokens-limit",
    REMAINING_TOKENS: b"anthropic-ratelimit-tokens-remaining",
}
_RESET_NAMES = {
    RESET_REQUESTS: b"anthropic-ratelimit-requests-reset",
    RESET_TOKENS: b"anthropic-ratelimit-tokens-reset",
}
_TOOL_BLOCKS = ("tool_use", "tool_result")
_STREAM_ENDS = (b"message_stop", b"error")


class AnthropicSurface(Surface):
    """What /v1/messages and its count_tokens share: the input, its texts, the errors."""

    def parse(self, raw: bytes) -> InferenceRequest:
        body = json_object(raw)
        model = body.get("model")  # may be left out: the tenant's default model fills it
        if model is not None and not isinstance(model, str):
            raise invalid("model", "a valid string")
        _check_messages(body.get("messages"))
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            raise invalid("system", "a valid string or a list of text blocks")
        return InferenceRequest(raw, body, model, False, False)

    def texts(self, request: InferenceRequest) -> RequestTexts:
        """The system prompt, the messages' string contents and text blocks, and the text of
        tool results (role ``tool``, as chat's tool messages)."""
        body = request.body
        messages = body["messages"]
        system = body.get("system")
        texts = RequestTexts("messages", messages=len(messages) + (1 if system else 0))
        if isinstance(system, str):
            texts.slots.append(TextSlot(body, "system", "system", "system"))
        elif isinstance(system, list):
            _block_slots(texts, system, "system", "system")
        for index, message in enumerate(messages):
            content, param = message.get("content"), f"messages[{index}].content"
            if isinstance(content, str):
                texts.slots.append(TextSlot(message, "content", message["role"], param))
            elif isinstance(content, list):
                _block_slots(texts, content, message["role"], param)
        return texts

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        """The texts, tool blocks and tools by length, plus the template's per-message tokens."""
        body = request.body
        messages = body["messages"]
        system = body.get("system")
        chars = _content_chars(system)
        for message in messages:
            chars += _content_chars(message.get("content"))
        tools = body.get("tools")
        if tools:
            chars += len(orjson.dumps(tools))
        turns = len(messages) + (1 if system else 0)
        return MESSAGE_OVERHEAD_TOKENS * turns + REPLY_PRIMING_TOKENS + text_tokens(chars)

    def upstream_body(self, request: InferenceRequest, upstream_model: str | None) -> bytes:
        """As the client sent it but for the model's name (Anthropic's streams carry their
        usage unasked)."""
        return renamed_body(request, upstream_model)

    def usage_filter(self, ctx: RequestContext) -> AnthropicUsage:
        return AnthropicUsage(ctx)

    def stream_finished(self, last_events: bytes) -> bool:
        """The last event is message_stop, or vLLM's own error event (the client was told)."""
        return event_type(last_events[:-2].rsplit(EVENT_END, 1)[-1]) in _STREAM_ENDS

    def stream_error(self, error: GatewayError) -> bytes:
        return b"event: error\ndata: " + _error_body(error.status, error.message) + EVENT_END

    def error_response(self, error: GatewayError) -> tuple[int, bytes]:
        status = OVERLOADED if error.status == 503 else error.status
        return status, _error_body(status, error.message)

    def upstream_error(self, status: int, body: bytes) -> GatewayError:
        """Always rewritten: vLLM answers /v1/messages errors in Anthropic's envelope with
        OpenAI's types (``NotFoundError``), or in OpenAI's shape (request validation)."""
        rewrapped = super().upstream_error(status, body)
        if rewrapped is not None:
            return rewrapped
        message: str = orjson.loads(body)["error"]["message"]
        return GatewayError(status, message)

    def limit_headers(self, headers: Headers) -> Headers:
        """x-ratelimit-* under Anthropic's names; a reset (a duration) as the RFC 3339 time
        it ends, rounded up to the second. Others (retry-after) as they are."""
        if not headers:
            return headers
        now = time.time()
        translated: Headers = []
        for name, value in headers:
            renamed = _LIMIT_NAMES.get(name)
            if renamed is not None:
                translated.append((renamed, value))
            elif (renamed := _RESET_NAMES.get(name)) is not None:
                translated.append((renamed, _reset_time(now, value)))
            else:
                translated.append((name, value))
        return translated


class Messages(AnthropicSurface):
    path = "/v1/messages"
    name = "messages"

    def parse(self, raw: bytes) -> InferenceRequest:
        request = super().parse(raw)
        body = request.body
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise BadRequest("max_tokens: Field required", "max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise invalid("max_tokens", "a valid integer")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise invalid("stream", "a valid boolean")
        request.stream = bool(stream)
        return request

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        """max_tokens is required here: the default never applies."""
        completion: int = max(0, request.body["max_tokens"])
        return min(self.estimate_prompt_tokens(request) + completion, MAX_TOKENS)

    def output_guard(self, policy: PolicyRuntime) -> ChunkFilter | None:
        guard = policy.text_guard()
        return None if guard is None else MessagesGuard(guard)


class CountTokens(AnthropicSurface):
    """Counted as a request by the limits, charged no tokens: it generates nothing, and vLLM
    only renders the prompt (no prefix cache, no scheduling: nothing to isolate)."""

    path = "/v1/messages/count_tokens"
    name = "messages.count_tokens"
    tenant_fields = False

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        return 0


class AnthropicUsage(UsageFilter):
    """Records the answer's usage in chat's shape. A stream's usage is set from its
    message_delta (over message_start's input and cache tokens), so a stream cut before it
    is charged as the pipeline charges one (estimated). Only events naming usage are parsed."""

    __slots__ = ("_start",)

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__(ctx)
        self._start: dict[str, Any] = {}

    def on_events(self, events: bytes) -> bytes:
        if b'"usage"' not in events:
            return events
        for event in events.split(EVENT_END)[:-1]:
            if b'"usage"' not in event:
                continue
            document = orjson.loads(event_data(event))
            kind = document.get("type")
            if kind == "message_start":
                usage = (document.get("message") or {}).get("usage")
                if isinstance(usage, dict):
                    self._start = usage
            elif kind == "message_delta":
                usage = document.get("usage")
                if isinstance(usage, dict):
                    self._ctx.usage = chat_usage({**self._start, **usage})
                delta = document.get("delta")
                if isinstance(delta, dict) and delta.get("stop_reason"):
                    self._ctx.finish_reason = delta["stop_reason"]
        return events

    def on_whole(self, body: bytes) -> bytes:
        if b'"usage"' in body:
            document = orjson.loads(body)
            if not isinstance(document, dict):
                return body
            usage = document.get("usage")
            if isinstance(usage, dict):
                self._ctx.usage = chat_usage(usage)
            if document.get("stop_reason"):
                self._ctx.finish_reason = document["stop_reason"]
        return body


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's usage as chat's. Anthropic's input_tokens leaves out the cache reads and
    writes (vLLM subtracts them from its prompt_tokens), so the prompt is their sum."""
    cached = usage.get("cache_read_input_tokens")
    prompt = (usage.get("input_tokens") or 0) + (cached or 0)
    prompt += usage.get("cache_creation_input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    normalised: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        normalised["prompt_tokens_details"] = {"cached_tokens": cached}
    return normalised


def invalid(param: str, expected: str) -> BadRequest:
    """A field of the wrong type, in Anthropic's words."""
    return BadRequest(f"{param}: Input should be {expected}", param)


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise BadRequest("messages: Field required", "messages")
    if not isinstance(messages, list):
        raise invalid("messages", "a valid list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages.{index}", "a valid dictionary")
        if not isinstance(message.get("role"), str):
            raise invalid(f"messages.{index}.role", "'user' or 'assistant'")


def _block_slots(texts: RequestTexts, blocks: list[Any], role: str, param: str) -> None:
    """The text blocks of a content list, and the texts of its tool results."""
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        where = f"{param}[{index}]"
        if block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                texts.slots.append(TextSlot(block, "content", "tool", f"{where}.content"))
            elif isinstance(inner, list):
                _block_slots(texts, inner, "tool", f"{where}.content")
        elif isinstance(block.get("text"), str):
            texts.slots.append(TextSlot(block, "text", role, f"{where}.text"))


def _content_chars(content: Any) -> int:
    """A string or blocks: the texts, and tool uses and results by their JSON length."""
    chars = content_chars(content)
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") in _TOOL_BLOCKS:
                chars += len(orjson.dumps(block))
    return chars


def _error_body(status: int, message: str) -> bytes:
    error_type = _ERROR_TYPES.get(status) or (
        "invalid_request_error" if status < 500 else "api_error"
    )
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def _reset_time(now: float, duration: bytes) -> bytes:
    """The limiter's reset (``250ms``, ``1.5s``, ``6m0s``: gateway/limits/headers.py) as the
    RFC 3339 time it ends."""
    text = duration.decode()
    if text.endswith("ms"):
        seconds = float(text[:-2]) / 1000
    else:
        minutes, _, secs = text[:-1].rpartition("m")
        seconds = float(minutes or 0) * 60 + float(secs)
    at = datetime.fromtimestamp(math.ceil(now + seconds), UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
