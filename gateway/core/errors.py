"""Errors in the OpenAI format: ``{"error": {"message", "type", "param", "code"}}``.

The openai SDK picks its exception class from the HTTP status alone, so every error the
gateway produces carries the status a client expects (400 BadRequestError, 404 NotFoundError,
413, 5xx InternalServerError ...), and the body says what went wrong in words.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    """An error answered to the client; raising it anywhere in the pipeline ends the request."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | int | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


def upstream_unavailable(detail: str) -> GatewayError:
    return GatewayError(
        503,
        f"The model server is unavailable: {detail}",
        "upstream_error",
        None,
        "upstream_unavailable",
    )


def upstream_bad_gateway(detail: str) -> GatewayError:
    return GatewayError(
        502, f"The model server failed: {detail}", "upstream_error", None, "bad_gateway"
    )


def upstream_timeout(detail: str) -> GatewayError:
    return GatewayError(
        504, f"The model server timed out: {detail}", "upstream_error", None, "upstream_timeout"
    )


class StoreUnavailable(GatewayError):
    """A store (Redis, SQLite, ...) cannot answer now: 503 with Retry-After, never a 500.

    `store` names the component whose store failed (``keys``, ``adapters``, ``usage`` ...) so
    an operator reading the error knows which one to look at; `kind` is the failure's class
    (``timeout``, ``connection``, ``loading``, ``readonly`` ...) for metrics.
    """

    def __init__(self, store: str, kind: str, retry_after_s: int = 1) -> None:
        super().__init__(
            503,
            f"The gateway's {store} store is unavailable ({kind}); retry shortly.",
            "server_error",
            None,
            "store_unavailable",
            headers={"retry-after": str(retry_after_s)},
        )
        self.store = store
        self.kind = kind
