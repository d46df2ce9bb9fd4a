"""Pooled keep-alive HTTP to vLLM, with every failure mapped to the status a client expects.

aiohttp carries the hot path because it was measured at ~7x the requests/s of httpx's
AsyncClient on this hardware (shared/notes/peers.md, and `bench/` re-measures it); httpx is
used only off the hot path (CLI, admin calls, tests).

Timeouts: connecting, then the first byte (the response headers; a non-streamed answer arrives
whole, so this bounds the whole generation), then for streams the gap between two reads. aiohttp
has one read timeout (`sock_read`) for the wait for the headers and for every later read alike,
so a stream is sent with the first-byte bound and its connection's read timeout is switched to
the idle bound once the headers are in.

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

from gateway.core.context import RequestContext
from gateway.core.errors import (
    GatewayError,
    UpstreamBadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.settings import UpstreamSettings


class UpstreamTransport:
    """One connection pool shared by all requests of a gateway process."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._auth = f"Bearer {settings.api_key}" if settings.api_key else None
        self._timeout = aiohttp.ClientTimeout(
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
        response = await self._request(ctx, "POST", url, body, headers)
        if stream:
            self._bound_stream_gaps(response)
        return response

    async def get(self, ctx: RequestContext, url: str) -> aiohttp.ClientResponse:
        headers = {"x-request-id": ctx.request_id}
        if self._auth:
            headers["authorization"] = self._auth
        return await self._request(ctx, "GET", url, None, headers)

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
            raise UpstreamTimeout("no response body in time") from None
        except aiohttp.ClientError as exc:
            drop_traceback(exc)
            raise UpstreamBadGateway(f"the response broke off ({type(exc).__name__})") from None
        finally:
            ctx.upstream_seconds += time.perf_counter() - started

    async def _request(
        self,
        ctx: RequestContext,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> aiohttp.ClientResponse:
        assert self._session is not None, "transport used before start()"
        send = partial(
            self._session.request, method, url, data=body, headers=headers, timeout=self._timeout
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.first_byte_timeout_s):
                try:
                    return await send()
                except aiohttp.ServerDisconnectedError:  # a stale pooled connection: once more
                    return await send()
        except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError, TimeoutError):
            raise UpstreamTimeout("no response in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(f"cannot connect ({exc.os_error.strerror})") from None
        except aiohttp.ClientError as exc:
            raise UpstreamBadGateway(f"no valid response ({type(exc).__name__})") from None
        finally:
            ctx.upstream_seconds += time.perf_counter() - started

    def _bound_stream_gaps(self, response: aiohttp.ClientResponse) -> None:
        """From the headers on, each read of the stream may wait `stream_idle_timeout_s`."""
        connection = response.connection
        if connection is None or connection.protocol is None:  # the whole body is already in
            return
        # The connection's next request resets the read timeout (set_response_params).
        connection.protocol.read_timeout = self._settings.stream_idle_timeout_s
        connection.protocol.start_timeout()  # the gap to the first event counts from now


def drop_traceback(exc: BaseException) -> None:
    """Call where an aiohttp error from reading a response body is caught and handled.

    aiohttp fails the body read of a response closed under it (``ClientResponse.close`` or
    ``release`` -> ``_notify_content``) with one module-level instance,
    ``aiohttp.client_reqrep._CONNECTION_CLOSED_EXCEPTION`` (since aio-libs/aiohttp#9405,
    October 2024; still so in 3.14.5). Raising an instance again does not start a fresh
    traceback: Python adds the frames it unwinds to the one the instance already holds (and
    asyncio's Future re-raises it with the traceback it had when it was set). Every client
    disconnect closes the upstream response under the relay's read, so each one added its
    frames, and with them their locals (the request, both connections, the buffers), to that
    process-wide traceback: memory that no gc.collect() frees, since it is all reachable.
    """
    exc.__traceback__ = None


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
