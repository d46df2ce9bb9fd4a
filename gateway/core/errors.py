"""Errors in the OpenAI format: ``{"error": {"message", "type", "param", "code"}}``.

The openai SDK picks its exception class from the HTTP status alone, so every error the
gateway produces carries the status a client expects, and the body says what went wrong in
words. Each kind is a class here, named as the SDK's exception for that status where it has
one (AuthenticationError, NotFoundError, ConflictError, RateLimitError, InternalServerError),
and carrying the type, code and headers of that kind; code that must tell errors apart does
it by class, never by comparing codes.
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
    """400: the request is malformed; `param` names the field, `code` the rule it broke."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(400, message, param=param, code=code)


class AuthenticationError(GatewayError):
    """401: no API key, or not a valid one; the answer asks for a bearer token."""

    def __init__(self, message: str) -> None:
        super().__init__(
            401,
            message,
            "invalid_request_error",
            None,
            "invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )


class NotFoundError(GatewayError):
    """404: no such route, model or record; `code` says which kind was looked for."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(404, message, param=param, code=code)


class MethodNotAllowed(GatewayError):
    """405: the route exists, but not for this method."""

    def __init__(self, message: str) -> None:
        super().__init__(405, message)


class ConflictError(GatewayError):
    """409: the change clashes with what is stored already."""

    def __init__(self, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(409, message, param=param, code=code)


class PayloadTooLarge(GatewayError):
    """413: the request body is over the gateway's limit."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message, code="request_too_large")


class RateLimitError(GatewayError):
    """429: over a rate limit, a budget or the queue's patience.

    `type` is OpenAI's for the limit hit (``requests``, ``tokens``, ``insufficient_quota``);
    `headers` say when to come back (Retry-After, the x-ratelimit-* window).
    """

    def __init__(self, message: str, type: str, code: str, headers: dict[str, str]) -> None:
        super().__init__(429, message, type, None, code, headers)


class InternalServerError(GatewayError):
    """500: the gateway itself failed, or its configuration is missing a piece."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(500, message, "server_error", None, code)


class ServiceUnavailable(GatewayError):
    """503: the gateway cannot serve the request now; with `retry_after_s`, a Retry-After."""

    def __init__(self, message: str, code: str, retry_after_s: int | None = None) -> None:
        headers = None if retry_after_s is None else {"retry-after": str(retry_after_s)}
        super().__init__(503, message, "server_error", None, code, headers)


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


class StoreUnavailable(ServiceUnavailable):
    """A store (Redis, SQLite, ...) cannot answer now: 503 with Retry-After, never a 500.

    `store` names the component whose store failed (``keys``, ``adapters``, ``usage`` ...) so
    an operator reading the error knows which one to look at; `kind` is the failure's class
    (``timeout``, ``connection``, ``loading``, ``readonly`` ...) for metrics.
    """

    def __init__(self, store: str, kind: str, retry_after_s: int = 1) -> None:
        super().__init__(
            f"The gateway's {store} store is unavailable ({kind}); retry shortly.",
            "store_unavailable",
            retry_after_s,
        )
        self.store = store
        self.kind = kind
