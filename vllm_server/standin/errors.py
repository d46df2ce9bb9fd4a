"""vLLM's error bodies, and reading request bodies the way FastAPI + pydantic reject them.

vLLM answers errors as {"error": {"message", "type", "param", "code"}} with the HTTP status
equal to `code`; request-validation failures carry type "Bad Request" and a dotted param
such as "body.messages". Unknown routes get FastAPI's {"detail": "Not Found"}. The Anthropic
routes (/v1/messages...) answer their own errors as {"type": "error", "error": {"type",
"message"}}, but request-validation failures there keep the OpenAI shape: FastAPI's
validation handler answers them before vLLM's Anthropic code runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

# vLLM bounds what a validation message echoes of the offending value
_MAX_ERROR_INPUT_CHARS = 200


class VLLMError(Exception):
    """Raised anywhere in a handler; the app's exception handler renders it."""

    def __init__(self, status: int, err_type: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.err_type = err_type
        self.message = message
        self.param = param

    def response(self) -> Response:
        return json_response(
            {
                "error": {
                    "message": self.message,
                    "type": self.err_type,
                    "param": self.param,
                    "code": self.status,
                }
            },
            self.status,
        )

    def anthropic_response(self) -> Response:
        return json_response(
            {"type": "error", "error": {"type": self.err_type, "message": self.message}},
            self.status,
        )


class RequestValidationError(VLLMError):
    """A body pydantic would reject: the same shape on every route."""

    def anthropic_response(self) -> Response:
        return self.response()


def json_response(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def model_not_found(model: str, served_model_name: str) -> VLLMError:
    return VLLMError(
        404,
        "NotFoundError",
        f"The model `{model}` does not exist. Valid aliases: {served_model_name}.",
        "model",
    )


def bad_request(message: str, param: str | None = None) -> VLLMError:
    return VLLMError(400, "BadRequestError", message, param)


def bad_parameter(message: str, param: str, value: object) -> VLLMError:
    """vLLM's checks of a parameter's value, which name it and the value at the end."""
    return bad_request(f"{message} (parameter={param}, value={value})", param)


def _summarize_input(value: object) -> str:
    if isinstance(value, list | tuple | dict):
        return f"<{type(value).__name__} of {len(value)} items>"
    text = str(value)
    if len(text) > _MAX_ERROR_INPUT_CHARS:
        return text[:_MAX_ERROR_INPUT_CHARS] + "...[truncated]"
    return text


def validation_error(
    loc: tuple[str | int, ...], kind: str, msg: str, value: object, **extra: object
) -> RequestValidationError:
    """One pydantic-style validation error, worded as vLLM's handler words it."""
    param = ".".join(str(part) for part in loc)
    error = {"type": kind, "loc": param, "msg": msg, "input": _summarize_input(value), **extra}
    return RequestValidationError(400, "Bad Request", f"1 validation error:\n  {error!r}", param)


def missing_field(field: str, body: object) -> RequestValidationError:
    return validation_error(("body", field), "missing", "Field required", body)


def wrong_type(field: str, expected: str, value: object) -> RequestValidationError:
    return validation_error(
        ("body", field), f"{expected}_type", f"Input should be a valid {expected}", value
    )


async def read_json_object(request: Request) -> dict:
    """The request body as a JSON object, or the 400 FastAPI would give instead."""
    raw = await request.body()
    if not raw:
        raise validation_error(("body",), "missing", "Field required", None)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise validation_error(
            ("body", exc.pos), "json_invalid", "JSON decode error", {}, ctx={"error": exc.msg}
        ) from None
    if not isinstance(body, dict):
        raise validation_error(
            ("body",),
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
            body,
        )
    return body


Endpoint = Callable[[Request], Awaitable[object]]


def anthropic_errors(endpoint: Endpoint) -> Endpoint:
    """An endpoint whose errors are rendered in the Anthropic shape."""

    async def answer(request: Request) -> object:
        try:
            return await endpoint(request)
        except VLLMError as exc:
            return exc.anthropic_response()

    return answer


async def render_vllm_error(_request: Request, exc: VLLMError) -> Response:
    return exc.response()


async def render_http_exception(_request: Request, exc: HTTPException) -> Response:
    """Starlette's routing errors (404, 405) in FastAPI's {"detail": ...} shape."""
    return Response(
        orjson.dumps({"detail": exc.detail}),
        exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )
