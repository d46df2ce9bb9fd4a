"""Pooled keep-alive HTTP to vLLM over aiohttp, with every failure mapped to a typed error.

aiohttp carries the hot path because it was measured at ~7x the requests/s of httpx's
AsyncClient on this hardware (shared/notes/peers.md, and `bench/` re-measures it); httpx is
used only off the hot path (CLI, admin calls, tests). It stays inside this module: callers see
`Transport` and `UpstreamResponse` (gateway/upstream/base.py). Bodies are passed on as the
server sent them (no decompression), so no Accept-Encoding is sent either: vLLM's /metrics
(prometheus_client) would otherwise answer gzip.

Timeouts: connecting, then the first byte (the response headers; a non-streamed answer arrives
whole, so this bounds the whole generation), then for streams the gap between two reads. aiohttp
has one read timeout (`sock_read`) for the wait for the headers and for every later read alike,
so a stream is sent with the first-byte bound and its connection's read timeout is switched to
the idle bound once the headers are in. A request with its own `timeout_s` (a control call) has
that one bound for the whole call instead, its body read included.

Stale connections: vLLM's server closes a keep-alive connection after 5 s idle. A request
sent on a pooled connection just as vLLM closes it is lost unanswered (aiohttp raises
ServerDisconnectedError), which a burst after a quiet spell hits by the dozen. So the pool
drops idle connections before vLLM does (`keepalive_timeout_s`, 4 s), and a request whose
connection closed before any answer came is sent once more, on another connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import aiohttp

from gateway.core.errors import (
    GatewayError,
    UpstreamBadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.settings import UpstreamSettings
from gateway.upstream.base import UpstreamRequest


class HttpTransport:
    """One connection pool; the gateway's hot path shares one across all its requests."""

    def __init__(self, settings: UpstreamSettings, max_connections: int | None = None) -> None:
        self._settings = settings
        self._max_connections = (
            settings.max_connections if max_connections is None else max_connections
        )
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.connect_timeout_s,
            sock_read=settings.first_byte_timeout_s,
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._settings.keepalive_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, request: UpstreamRequest) -> HttpResponse:
        assert self._session is not None, "transport used before start()"
        if request.timeout_s is None:
            timeout, bound = self._timeout, self._settings.first_byte_timeout_s
        else:
            timeout, bound = aiohttp.ClientTimeout(total=request.timeout_s), request.timeout_s
        send = partial(
            self._session.request,
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=timeout,
        )
        try:
            async with asyncio.timeout(bound):
                try:
                    response = await send()
                except aiohttp.ServerDisconnectedError:  # a stale pooled connection: once more
                    response = await send()
        except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError, TimeoutError):
            raise UpstreamTimeout("no response in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(f"cannot connect ({exc.os_error.strerror})") from None
        except aiohttp.ClientError as exc:
            raise UpstreamBadGateway(f"no valid response ({type(exc).__name__})") from None
        if request.stream:
            self._bound_stream_gaps(response)
        return HttpResponse(response)

    def _bound_stream_gaps(self, response: aiohttp.ClientResponse) -> None:
        """From the headers on, each read of the stream may wait `stream_idle_timeout_s`."""
        connection = response.connection
        if connection is None or connection.protocol is None:  # the whole body is already in
            return
        # The connection's next request resets the read timeout (set_response_params).
        connection.protocol.read_timeout = self._settings.stream_idle_timeout_s
        connection.protocol.start_timeout()  # the gap to the first event counts from now


class HttpResponse:
    """An aiohttp response behind `UpstreamResponse`: its failures come out as `GatewayError`."""

    __slots__ = ("_response", "content_type", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.content_type = response.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError:
            raise UpstreamTimeout("no response body in time") from None
        except aiohttp.ClientError as exc:
            drop_traceback(exc)
            raise UpstreamBadGateway(f"the response broke off ({type(exc).__name__})") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except TimeoutError:
            raise UpstreamTimeout("the stream stalled") from None
        except aiohttp.ClientError as exc:
            drop_traceback(exc)  # a client disconnect lands here, with aiohttp's shared instance
            raise UpstreamBadGateway(f"the stream broke off ({type(exc).__name__})") from None

    def close(self) -> None:
        self._response.close()

    def release(self) -> None:
        self._response.release()

    def cut(self, error: GatewayError) -> None:
        # Set before close(), which then leaves it in place of aiohttp's "Connection closed".
        self._response.content.set_exception(error)
        self._response.close()


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
