"""The typed errors: each carries its status, type and code, rendered in OpenAI's format."""

from __future__ import annotations

import orjson
import pytest

from gateway.core.errors import (
    AuthenticationError,
    BadRequest,
    ConflictError,
    GatewayError,
    InternalServerError,
    MethodNotAllowed,
    NotFoundError,
    PayloadTooLarge,
    RateLimitError,
    ServiceUnavailable,
    StoreUnavailable,
    UpstreamBadGateway,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

RETRY = {"retry-after": "3"}


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (BadRequest("bad", "messages"), 400, "invalid_request_error", None),
        (BadRequest("bad", "messages", "rule"), 400, "invalid_request_error", "rule"),
        (AuthenticationError("who?"), 401, "invalid_request_error", "invalid_api_key"),
        (NotFoundError("none", "model_not_found"), 404, "invalid_request_error", "model_not_found"),
        (MethodNotAllowed("not so"), 405, "invalid_request_error", None),
        (ConflictError("taken", "conflict"), 409, "invalid_request_error", "conflict"),
        (PayloadTooLarge("too big"), 413, "invalid_request_error", "request_too_large"),
        (
            RateLimitError("slow down", "tokens", "rate_limit_exceeded", RETRY),
            429,
            "tokens",
            "rate_limit_exceeded",
        ),
        (InternalServerError("failed"), 500, "server_error", None),
        (ServiceUnavailable("busy", "queue_timeout", 3), 503, "server_error", "queue_timeout"),
        (UpstreamUnavailable("cannot connect"), 503, "upstream_error", "upstream_unavailable"),
        (UpstreamBadGateway("broke off"), 502, "upstream_error", "bad_gateway"),
        (UpstreamTimeout("no answer"), 504, "upstream_error", "upstream_timeout"),
        (StoreUnavailable("keys", "timeout"), 503, "server_error", "store_unavailable"),
    ],
)
def test_each_error_renders_in_openai_format(
    error: GatewayError, status: int, type_: str, code: str | None
) -> None:
    assert error.status == status
    body = orjson.loads(error.body())["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert (body["type"], body["code"]) == (type_, code)
    assert body["message"]


@pytest.mark.parametrize(
    ("error", "headers"),
    [
        (AuthenticationError("who?"), {"www-authenticate": "Bearer"}),
        (RateLimitError("slow down", "requests", "queue_timeout", RETRY), RETRY),
        (ServiceUnavailable("busy", "queue_timeout", 3), RETRY),
        (ServiceUnavailable("busy", "safety_check_unavailable"), {}),
        (StoreUnavailable("keys", "timeout", 3), RETRY),
        (NotFoundError("none", "key_not_found"), {}),
    ],
)
def test_each_error_carries_its_headers(error: GatewayError, headers: dict[str, str]) -> None:
    assert error.headers == headers


def test_the_record_and_field_are_the_callers() -> None:
    assert NotFoundError("none", "tenant_not_found", "tenant_id").param == "tenant_id"
    assert ConflictError("in use", "adapter_in_use", "base_model").param == "base_model"
    assert isinstance(StoreUnavailable("keys", "timeout"), ServiceUnavailable)


def test_upstream_errors_are_told_apart_by_class_not_by_code() -> None:
    """The router retries another replica on UpstreamUnavailable only."""
    assert isinstance(UpstreamUnavailable("x"), UpstreamError)
    assert not isinstance(UpstreamTimeout("x"), UpstreamUnavailable)
    assert not isinstance(UpstreamBadGateway("x"), UpstreamUnavailable)
    assert BadRequest("x", "model").param == "model"
