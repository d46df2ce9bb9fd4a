"""`POST /v1/responses`: the Responses API, an input (text or items) in, a response object or
its typed event stream out.

The gateway checks what it reads itself (model, stream, input, instructions,
max_output_tokens) and leaves the rest to vLLM. A stream is typed SSE (`event: <type>` then
`data: {"type": <type>, ...}`) and always ends with `response.completed` (or `.incomplete`,
`.failed`), whose response object carries the usage: unlike chat, nothing has to be asked for.
The usage is recorded in the chat shape the limits and the ledger read. vLLM's Responses
endpoint takes `cache_salt` and `priority` as chat does (vLLM 0.32 `ResponsesRequest`), so the
tenant's isolation fields apply. Output safety: gateway/surfaces/responses_guard.py.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

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
from gateway.safety.runtime import PolicyRuntime
from gateway.safety.text_guard import TextGuard
from gateway.surfaces.base import Surface, UsageFilter
from gateway.surfaces.openai import (
    check_integer,
    json_object,
    model_and_stream,
    renamed_body,
    serialise,
    wrong_type,
)
from gateway.surfaces.responses_guard import TERMINAL_TYPES, PartKey, ResponsesGuard
from gateway.surfaces.typed_events import EVENT_END, event_data, typed_event

INPUT_ROLE = "user"  # a string input
INSTRUCTIONS_ROLE = "system"
TOOL_OUTPUT_ROLE = "tool"  # function_call_output items, as chat's tool messages
ITEM_ROLE = "assistant"  # other items without a role: the model's own (reasoning, ...)
_TERMINAL_LINES = tuple(f"event: {kind}\n".encode() for kind in TERMINAL_TYPES)
# one pass over a batch of events rather than one per terminal type
_TERMINAL_EVENT = re.compile(b"|".join(re.escape(line) for line in _TERMINAL_LINES))


class Responses(Surface):
    path = "/v1/responses"
    name = "responses"
    keeps_state = True

    def parse(self, raw: bytes) -> InferenceRequest:
        body = json_object(raw)
        model, stream = model_and_stream(body)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise wrong_type("instructions", "a string", instructions)
        check_integer(body, "max_output_tokens")
        if "input" not in body:
            raise BadRequest("Missing required parameter: 'input'.", "input")
        _check_input(body["input"])
        _check_state_fields(body)
        # the usage is in every stream's last event: the client gets it whether it asks or not
        return InferenceRequest(raw, body, model, stream, client_wants_usage=True)

    def texts(self, request: InferenceRequest) -> RequestTexts:
        """The instructions, and the input: a string, or its items' contents (a string or
        text parts) and function-call outputs."""
        body = request.body
        value = body["input"]
        instructions = body.get("instructions")
        texts = RequestTexts("input", messages=1 if isinstance(value, str) else len(value))
        if isinstance(instructions, str):
            texts.slots.append(TextSlot(body, "instructions", INSTRUCTIONS_ROLE, "instructions"))
            texts.messages += 1
        if isinstance(value, str):
            texts.slots.append(TextSlot(body, "input", INPUT_ROLE, "input"))
            return texts
        for index, item in enumerate(value):
            texts.slots.extend(_item_slots(item, f"input[{index}]"))
        return texts

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        """The texts by length (items that are not messages by their JSON), the tools, and the
        template's tokens per message (the instructions count as one)."""
        body = request.body
        value = body["input"]
        items: list[Any] = [value] if isinstance(value, str) else value
        chars = 0
        for item in items:
            if isinstance(item, str):
                chars += len(item)
            elif "content" in item:
                chars += content_chars(item["content"])
            else:
                chars += len(serialise(item))
        messages = len(items)
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            chars += len(instructions)
            messages += 1
        tools = body.get("tools")
        if tools:
            chars += len(orjson.dumps(tools))
        return MESSAGE_OVERHEAD_TOKENS * messages + REPLY_PRIMING_TOKENS + text_tokens(chars)

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        limit = request.body.get("max_output_tokens")
        if limit is None:
            limit = default_max_tokens
        return min(self.estimate_prompt_tokens(request) + max(0, limit), MAX_TOKENS)

    def upstream_body(self, request: InferenceRequest, upstream_model: str | None) -> bytes:
        return renamed_body(request, upstream_model)

    def usage_filter(self, ctx: RequestContext) -> ResponsesUsage:
        return ResponsesUsage(ctx)

    def output_guard(self, policy: PolicyRuntime) -> ChunkFilter | None:
        guard: TextGuard[PartKey] | None = policy.text_guard()
        return None if guard is None else ResponsesGuard(guard)

    def stream_finished(self, last_events: bytes) -> bool:
        """The last event is the response's end (completed, incomplete or failed)."""
        last = last_events.rfind(EVENT_END, 0, len(last_events) - len(EVENT_END))
        return last_events.startswith(_TERMINAL_LINES, last + len(EVENT_END) if last >= 0 else 0)

    def stream_error(self, error: GatewayError) -> bytes:
        """An `error` event, as the Responses API reports an error in a stream: `code`,
        `message`, `param` and `sequence_number` (the openai SDK's `ResponseErrorEvent`).

        It also carries the error object under `error`, as a chat stream's error does: the
        openai SDK's stream parser raises `APIError` only for data with an `error` key, and
        would otherwise yield the event as one more item and end quietly. The codec does not
        see the stream, so `sequence_number` is 0 rather than the next number.
        """
        code = None if error.code is None else str(error.code)
        event = {
            "type": "error",
            "code": code,
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
            **orjson.loads(error.body()),
        }
        return typed_event(event)


class ResponsesUsage(UsageFilter):
    """Records the usage of the response object (a whole answer, or the stream's terminal
    event) in the chat shape; passes everything on as it is. Only terminal events that
    mention usage are parsed."""

    __slots__ = ()

    def on_events(self, events: bytes) -> bytes:
        if b'"usage"' not in events:
            return events
        at = 0
        while (at := find_terminal(events, at)) >= 0:
            end = events.find(EVENT_END, at)
            event = events[at:end] if end >= 0 else events[at:]
            if b'"usage"' in event:
                document = orjson.loads(event_data(event))
                if isinstance(document, dict):
                    self._record(document.get("response"))
            at = end if end >= 0 else len(events)
        return events

    def on_whole(self, body: bytes) -> bytes:
        if b'"usage"' in body:
            self._record(orjson.loads(body))
        return body

    def _record(self, response: Any) -> None:
        if not isinstance(response, dict):
            return
        usage = response.get("usage")
        if isinstance(usage, dict):
            self._ctx.usage = chat_usage(usage)
        incomplete = response.get("incomplete_details")
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        self._ctx.finish_reason = reason or response.get("status")


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Responses usage (input_tokens, output_tokens, input_tokens_details.cached_tokens) as
    chat's (prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens)."""
    normalised: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
    }
    details = usage.get("input_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        normalised["prompt_tokens_details"] = {"cached_tokens": details["cached_tokens"]}
    return normalised


def find_terminal(events: bytes, start: int = 0) -> int:
    """Where the next terminal event at or after `start` begins (-1: none)."""
    found = _TERMINAL_EVENT.search(events, start)
    return -1 if found is None else found.start()


def _check_input(value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise wrong_type("input", "a string or an array", value)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise wrong_type(f"input[{index}]", "an object", item)
        role = item.get("role")
        if role is not None and not isinstance(role, str):
            raise wrong_type(f"input[{index}].role", "a string", role)


def _item_slots(item: dict[str, Any], param: str) -> list[TextSlot]:
    """The texts of one input item: a message's content, a function call's output."""
    role = item.get("role")
    if not isinstance(role, str):
        role = TOOL_OUTPUT_ROLE if item.get("type") == "function_call_output" else ITEM_ROLE
    content = item.get("content")
    if isinstance(content, str):
        return [TextSlot(item, "content", role, f"{param}.content")]
    if isinstance(content, list):
        return [
            TextSlot(part, "text", role, f"{param}.content[{part_index}].text")
            for part_index, part in enumerate(content)
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    if isinstance(item.get("output"), str):
        return [TextSlot(item, "output", role, f"{param}.output")]
    return []


def _check_state_fields(body: dict[str, Any]) -> None:
    """`store`, `background` and `previous_response_id`, which the gateway acts on itself
    (gateway/surfaces/responses_state.py)."""
    for name in ("store", "background"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise wrong_type(name, "a boolean", value)
    previous_id = body.get("previous_response_id")
    if previous_id is not None and (not isinstance(previous_id, str) or not previous_id):
        raise wrong_type("previous_response_id", "a response id", previous_id)
    if body.get("background") and body.get("store") is False:
        raise BadRequest("background can only be used when `store` is true.", "background")
