"""Parse and check an inference request body: only the fields the gateway must trust.

Full validation is vLLM's job; the gateway checks what it reads itself (model, stream,
stream_options, token limits) and what would otherwise reach vLLM as a confusing error
(missing or mistyped ``messages`` / ``prompt`` / ``input``), answering 400 with ``param`` set.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import BadRequest
from gateway.core.request import Endpoint, InferenceRequest

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


def parse_request(endpoint: Endpoint, raw: bytes) -> InferenceRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")

    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    client_wants_usage = _check_stream_options(body.get("stream_options"))
    for name in _INTEGER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _wrong_type(name, "an integer", value)
    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise _wrong_type(name, "a number", value)
    _check_input(endpoint, body)
    if stream and endpoint is Endpoint.EMBEDDINGS:
        raise BadRequest("Embeddings cannot be streamed.", "stream")
    return InferenceRequest(endpoint, raw, body, model, stream, client_wants_usage)


def upstream_body(request: InferenceRequest, upstream_model: str | None) -> bytes:
    """The bytes for vLLM: the client's own unless the model name or stream options change.

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
    try:
        return orjson.dumps(request.body)
    except orjson.JSONEncodeError as exc:  # orjson reads 1024 levels deep but writes 255
        raise BadRequest(f"The request body cannot be forwarded: {exc}") from None


def _check_stream_options(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _wrong_type("stream_options", "an object", options)
    include_usage = options.get("include_usage", False)
    if include_usage is None:
        return False
    if not isinstance(include_usage, bool):
        raise _wrong_type("stream_options.include_usage", "a boolean", include_usage)
    return include_usage


def _check_input(endpoint: Endpoint, body: dict[str, Any]) -> None:
    name = endpoint.input_field
    if name not in body:
        raise BadRequest(f"Missing required parameter: '{name}'.", name)
    value = body[name]
    if endpoint is Endpoint.CHAT:
        if not isinstance(value, list):
            raise _wrong_type(name, "an array", value)
        if not value:
            raise BadRequest(f"'{name}' must contain at least one message.", name)
        for index, message in enumerate(value):
            if not isinstance(message, dict):
                raise _wrong_type(f"{name}[{index}]", "an object", message)
            if not isinstance(message.get("role"), str):
                raise BadRequest(
                    f"Missing or invalid 'role' in {name}[{index}].", f"{name}[{index}].role"
                )
    elif not _is_text_or_tokens(value):
        raise BadRequest(
            f"Invalid '{name}': expected a string, an array of strings, an array of token ids "
            "or an array of token-id arrays.",
            name,
        )


def _is_text_or_tokens(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, str):
        return all(isinstance(item, str) for item in value)
    if isinstance(first, int):
        return all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    if isinstance(first, list):
        return all(
            isinstance(item, list)
            and item
            and _is_text_or_tokens(item)
            and isinstance(item[0], int)
            for item in value
        )
    return False


def _wrong_type(param: str, expected: str, value: Any) -> Exception:
    got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    return BadRequest(f"Invalid type for '{param}': expected {expected}, but got {got}.", param)
