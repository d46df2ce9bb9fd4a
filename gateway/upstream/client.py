"""What the pipeline holds to call vLLM: a `Transport` with the request's headers added and
the time spent waiting on the upstream counted into the request's context (the overhead the
gateway reports leaves it out)."""

from __future__ import annotations

import time

import orjson

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.upstream.base import Transport, UpstreamRequest, UpstreamResponse


class UpstreamClient:
    def __init__(self, transport: Transport, api_key: str | None) -> None:
        self._transport = transport
        self._auth = f"Bearer {api_key}" if api_key else None

    async def post(
        self,
        ctx: RequestContext,
        url: str,
        body: bytes,
        stream: bool,
        content_type: str = "application/json",
    ) -> UpstreamResponse:
        """Send the request; return once the response headers are in."""
        headers = {"content-type": content_type, "x-request-id": ctx.request_id}
        if self._auth:
            headers["authorization"] = self._auth
        if ctx.trace_headers:  # W3C trace context: vLLM's span joins the request's trace
            headers.update(ctx.trace_headers)
        return await self._send(ctx, UpstreamRequest("POST", url, body, headers, stream))

    async def get(self, ctx: RequestContext, url: str) -> UpstreamResponse:
        headers = {"x-request-id": ctx.request_id}
        if self._auth:
            headers["authorization"] = self._auth
        return await self._send(ctx, UpstreamRequest("GET", url, None, headers))

    async def read(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        """The whole response body."""
        started = time.perf_counter()
        try:
            return await response.read()
        finally:
            ctx.upstream_seconds += time.perf_counter() - started

    async def _send(self, ctx: RequestContext, request: UpstreamRequest) -> UpstreamResponse:
        started = time.perf_counter()
        try:
            return await self._transport.send(request)
        finally:
            ctx.upstream_seconds += time.perf_counter() - started


def as_openai_error(status: int, body: bytes) -> GatewayError | None:
    """None when `body` is already an OpenAI error (vLLM's are: relay the bytes as they are);
    otherwise the same status rewrapped (a FastAPI ``{"detail": ...}``, a proxy's HTML page)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return None
        detail = parsed.get("detail")
        message = detail if isinstance(detail, str) else orjson.dumps(parsed).decode()
    else:
        message = body.decode(errors="replace").strip()[:500] or f"HTTP {status}"
    error_type = "invalid_request_error" if status < 500 else "upstream_error"
    return GatewayError(status, f"The model server answered: {message}", error_type, None, status)
