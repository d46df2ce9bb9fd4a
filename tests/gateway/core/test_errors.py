"""The typed errors: each carries its status, type and code, rendered in OpenAI's format."""

from __future__ import annotations

import orjson
import pytest

from gateway.core.errors import (
    BadRequest,
    GatewayError,
    StoreUnavailable,
    UpstreamBadGateway,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (BadRequest("bad", "messages"), 400, "invalid_request_error", None),
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


def test_upstream_errors_are_told_apart_by_class_not_by_code() -> None:
    """The router retries another replica on UpstreamUnavailable only."""
    assert isinstance(UpstreamUnavailable("x"), UpstreamError)
    assert not isinstance(UpstreamTimeout("x"), UpstreamUnavailable)
    assert not isinstance(UpstreamBadGateway("x"), UpstreamUnavailable)
    assert BadRequest("x", "model").param == "model"
