"""vLLM's error bodies, and reading request bodies the way FastAPI + pydantic reject them.

vLLM answers errors as {"error": {"message", "type", "param", "code"}} with the HTTP status
equal to `code`; request-validation failures carry type "Bad Request" and a dotted param
such as "body.messages". Unknown routes get FastAPI's {"detail": "Not Found"}.
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response


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


def json_response(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def model_not_found(model: str) -> VLLMError:
    return VLLMError(404, "NotFoundError", f"The model `{model}` does not exist.", "model")


def bad_request(message: str, param: str | None = None) -> VLLMError:
    return VLLMError(400, "BadRequestError", message, param)


def validation_error(
    loc: tuple[str | int, ...], kind: str, msg: str, value: object, **extra: object
) -> VLLMError:
    """One pydantic-style validation error, worded as vLLM's handler words it."""
    error = {"type": kind, "loc": loc, "msg": msg, "input": value, **extra}
    param = ".".join(str(part) for part in loc)
    return VLLMError(400, "Bad Request", f"1 validation error:\n  {error!r}", param)


def missing_field(field: str, body: object) -> VLLMError:
    return validation_error(("body", field), "missing", "Field required", body)


def wrong_type(field: str, expected: str, value: object) -> VLLMError:
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
