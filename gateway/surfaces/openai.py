"""What the OpenAI surfaces share: their field checks, stream framing, usage and errors.

Full validation is vLLM's job; the gateway checks what it reads itself (model, stream,
stream_options, token limits) and what would otherwise reach vLLM as a confusing error
(missing or mistyped ``messages`` / ``prompt`` / ``input``), answering 400 with ``param`` set.
Streams are ``data: {json}`` events ended by ``data: [DONE]``; the gateway always asks for
usage and drops the usage-only chunk the client did not ask for.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import orjson

from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.request import InferenceRequest
from gateway.limits.estimate import MAX_TOKENS
from gateway.surfaces.base import Surface, UsageFilter

EVENT_END = b"\n\n"
DONE = b"data: [DONE]\n\n"
_JSON_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}
_INTEGER_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_k")
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


class OpenAISurface(Surface):
    input_field: ClassVar[str]

    def parse(self, raw: bytes) -> InferenceRequest:
        body = json_object(raw)
        model, stream = model_and_stream(body)
        client_wants_usage = _check_stream_options(body.get("stream_options"))
        for name in _INTEGER_FIELDS:
            check_integer(body, name)
        for name in _NUMBER_FIELDS:
            value = body.get(name)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                raise wrong_type(name, "a number", value)
        if self.input_field not in body:
            raise BadRequest(f"Missing required parameter: '{self.input_field}'.", self.input_field)
        self.check_input(body[self.input_field])
        return InferenceRequest(raw, body, model, stream, client_wants_usage)

    @abstractmethod
    def check_input(self, value: Any) -> None:
        """Raise BadRequest unless the input field has the shape this surface takes."""

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        body = request.body
        completion = body.get("max_completion_tokens")
        if completion is None:
            completion = body.get("max_tokens")
        if completion is None:
            completion = default_max_tokens
        choices = body.get("n") or 1
        prompt = self.estimate_prompt_tokens(request)
        return min(prompt + max(0, completion) * max(1, choices), MAX_TOKENS)

    def upstream_body(self, request: InferenceRequest, upstream_model: str | None) -> bytes:
        """The client's own bytes unless the model name or stream options change.

        Streams always ask for usage, so the gateway learns what every stream cost.
        """
        rename = upstream_model is not None and upstream_model != request.model
        if not (rename or request.stream or request.changed):
            return request.raw
        if rename:
            request.body["model"] = upstream_model
        if request.stream:
            options = request.body.get("stream_options") or {}
            request.body["stream_options"] = {**options, "include_usage": True}
        return serialise(request.body)

    def usage_filter(self, ctx: RequestContext) -> OpenAIUsage:
        return OpenAIUsage(ctx)

    def stream_finished(self, last_events: bytes) -> bool:
        return last_events.endswith(DONE)

    def stream_error(self, error: GatewayError) -> bytes:
        return b"data: " + error.body() + EVENT_END


_FINISHED = b'"finish_reason":"'  # a choice that ended (a null one is not a string)


class OpenAIUsage(UsageFilter):
    """Records usage and the finish reason from the events that carry them; drops the
    usage-only chunk the gateway asked for, unless the client asked for it too. Only events
    that mention usage or a finish reason are parsed."""

    __slots__ = ()

    def on_events(self, events: bytes) -> bytes:
        if b'"usage"' not in events and _FINISHED not in events:
            return events
        kept = []
        for event in events.split(EVENT_END)[:-1]:
            if event.startswith(b"data: {") and (b'"usage"' in event or _FINISHED in event):
                chunk = orjson.loads(event[6:])
                self._finished(chunk)
                usage = chunk.get("usage")
                if usage:
                    self._ctx.usage = usage
                    if not chunk.get("choices") and not self._ctx.client_wants_usage:
                        continue
            kept.append(event + EVENT_END)
        return b"".join(kept)

    def on_whole(self, body: bytes) -> bytes:
        if b'"usage"' in body:
            document = orjson.loads(body)
            if isinstance(document, dict):
                self._ctx.usage = document.get("usage")
                self._finished(document)
        return body

    def _finished(self, document: dict[str, Any]) -> None:
        for choice in document.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if reason:
                self._ctx.finish_reason = reason


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def model_and_stream(body: dict[str, Any]) -> tuple[str | None, bool]:
    """`model` (a string, or left out) and `stream` (a boolean; null or left out: False)."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    stream = body.get("stream", False)
    if stream is None:
        return model, False
    if not isinstance(stream, bool):
        raise wrong_type("stream", "a boolean", stream)
    return model, stream


def check_integer(body: dict[str, Any], name: str) -> None:
    """Raise BadRequest unless the field is an integer or left out (null)."""
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise wrong_type(name, "an integer", value)


def serialise(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as exc:  # orjson reads 1024 levels deep but writes 255
        raise BadRequest(f"The request body cannot be forwarded: {exc}") from None


def renamed_body(request: InferenceRequest, upstream_model: str | None) -> bytes:
    """The client's own bytes unless the model name changes or a stage rewrote the body."""
    rename = upstream_model is not None and upstream_model != request.model
    if not (rename or request.changed):
        return request.raw
    if rename:
        request.body["model"] = upstream_model
    return serialise(request.body)


def wrong_type(param: str, expected: str, value: Any) -> BadRequest:
    got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    return BadRequest(f"Invalid type for '{param}': expected {expected}, but got {got}.", param)


def _check_stream_options(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise wrong_type("stream_options", "an object", options)
    include_usage = options.get("include_usage", False)
    if include_usage is None:
        return False
    if not isinstance(include_usage, bool):
        raise wrong_type("stream_options.include_usage", "a boolean", include_usage)
    return include_usage
