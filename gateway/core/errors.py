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


class BadRequest(GatewayError):
    """400: the request is malformed; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(400, message, param=param)


class UpstreamError(GatewayError):
    """The model server did not give a usable answer (5xx, type ``upstream_error``)."""

    status_code = 502
    error_code = "bad_gateway"
    summary = "The model server failed"

    def __init__(self, detail: str) -> None:
        super().__init__(
            self.status_code, f"{self.summary}: {detail}", "upstream_error", None, self.error_code
        )


class UpstreamUnavailable(UpstreamError):
    """503: no replica could be reached; the router may try another one."""

    status_code = 503
    error_code = "upstream_unavailable"
    summary = "The model server is unavailable"


class UpstreamBadGateway(UpstreamError):
    """502: the replica answered something that is not a valid response, or broke off."""


class UpstreamTimeout(UpstreamError):
    """504: no answer (or no next stream event) in time."""

    status_code = 504
    error_code = "upstream_timeout"
    summary = "The model server timed out"


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
