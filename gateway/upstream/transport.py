"""Pooled keep-alive HTTP to vLLM, with every failure mapped to the status a client expects.

aiohttp carries the hot path because it was measured at ~7x the requests/s of httpx's
AsyncClient on this hardware (shared/notes/peers.md, and `bench/` re-measures it); httpx is
used only off the hot path (CLI, admin calls, tests).

Timeouts: connecting, then the first byte (the response headers; a non-streamed answer arrives
whole, so this bounds the whole generation), then for streams the gap between two reads.

Stale connections: vLLM's server closes a keep-alive connection after 5 s idle. A request
sent on a pooled connection just as vLLM closes it is lost unanswered (aiohttp raises
ServerDisconnectedError), which a burst after a quiet spell hits by the dozen. So the pool
drops idle connections before vLLM does (`keepalive_timeout_s`, 4 s), and a request whose
connection closed before any answer came is sent once more, on another connection.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import aiohttp
import orjson

from gateway.context import RequestContext
from gateway.errors import (
    GatewayError,
    upstream_bad_gateway,
    upstream_timeout,
    upstream_unavailable,
)
from gateway.settings import UpstreamSettings

StreamBroken = (aiohttp.ClientError, asyncio.TimeoutError)


class UpstreamTransport:
    """One connection pool shared by all requests of a gateway process."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._auth = f"Bearer {settings.api_key}" if settings.api_key else None
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.stream_idle_timeout_s,
        )
        self._whole_timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.first_byte_timeout_s,
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_connections,
            keepalive_timeout=self._settings.keepalive_timeout_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(
        self, ctx: RequestContext, url: str, body: bytes, stream: bool
    ) -> aiohttp.ClientResponse:
        """Send the request; return once the response headers are in (time goes to ctx)."""
        headers = {"content-type": "application/json", "x-request-id": ctx.request_id}
        if self._auth:
            headers["authorization"] = self._auth
        return await self._request(
            ctx, "POST", url, body, headers, self._stream_timeout if stream else self._whole_timeout
        )

    async def get(self, ctx: RequestContext, url: str) -> aiohttp.ClientResponse:
        headers = {"x-request-id": ctx.request_id}
        if self._auth:
            headers["authorization"] = self._auth
        return await self._request(ctx, "GET", url, None, headers, self._whole_timeout)

    async def probe(self, url: str, timeout_s: float = 2.0) -> bool:
        """True when GET `url` answers 200 within `timeout_s` (readiness, not the hot path)."""
        assert self._session is not None, "transport used before start()"
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def read(self, ctx: RequestContext, response: aiohttp.ClientResponse) -> bytes:
        """The whole response body, counted as upstream time."""
        started = time.perf_counter()
        try:
            return await response.read()
        except TimeoutError:
            raise upstream_timeout("no response body in time") from None
        except aiohttp.ClientError as exc:
            raise upstream_bad_gateway(f"the response broke off ({type(exc).__name__})") from None
        finally:
            ctx.upstream_seconds += time.perf_counter() - started

    async def _request(
        self,
        ctx: RequestContext,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        assert self._session is not None, "transport used before start()"
        send = partial(
            self._session.request, method, url, data=body, headers=headers, timeout=timeout
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.first_byte_timeout_s):
                try:
                    return await send()
                except aiohttp.ServerDisconnectedError:  # a stale pooled connection: once more
                    return await send()
        except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError, TimeoutError):
            raise upstream_timeout("no response in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise upstream_unavailable(f"cannot connect ({exc.os_error.strerror})") from None
        except aiohttp.ClientError as exc:
            raise upstream_bad_gateway(f"no valid response ({type(exc).__name__})") from None
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
