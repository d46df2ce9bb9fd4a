"""The in-memory fake transport: answers from a Python callable, for fast in-process tests.

`MemoryTransport(handler)` sends each `UpstreamRequest` to `handler` and returns the
`MemoryResponse` it gives; it keeps the requests it got in `requests`. A handler fails a call
as the HTTP transport would, by raising `UpstreamUnavailable`, `UpstreamTimeout` or
`UpstreamBadGateway`; a request's `timeout_s` bounds the handler. A stream is a list of chunks,
or an async iterator that may wait between them (and raise one of those errors to break off);
`close`, `release` and `cut` end it under a pending read, as they do an HTTP response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.core.errors import GatewayError, UpstreamBadGateway, UpstreamTimeout
from gateway.upstream.base import UpstreamRequest


class MemoryResponse:
    """`body` whole, or `chunks` one by one (the whole body is then their concatenation)."""

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        chunks: list[bytes] | AsyncIterator[bytes] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.closed = False
        self.released = False
        if chunks is None:
            chunks = [body] if body else []
        self._source = _iterate(chunks) if isinstance(chunks, list) else chunks
        self._ended: GatewayError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._next()) is not None:
            yield chunk

    def close(self) -> None:
        self.closed = True
        self._end(UpstreamBadGateway("the response was closed"))

    def release(self) -> None:
        self.released = True
        self._end(UpstreamBadGateway("the response was released"))

    def cut(self, error: GatewayError) -> None:
        self._end(error)
        self.close()

    async def _next(self) -> bytes | None:
        """The next chunk, None at the end; raises the error the response was ended with,
        whether before the read or while it waited."""
        self._raise_if_ended()
        self._waiter = asyncio.get_running_loop().create_future()
        step = asyncio.ensure_future(anext(self._source, None))
        try:
            await asyncio.wait((step, self._waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiter = None
            step.cancel()
        self._raise_if_ended()
        return step.result()

    def _end(self, error: GatewayError) -> None:
        """The first ending counts (a cut's error stays, as it does in aiohttp)."""
        if self._ended is None:
            self._ended = error
            if self._waiter is not None:
                self._waiter.set_result(None)

    def _raise_if_ended(self) -> None:
        if self._ended is not None:
            raise self._ended


Handler = Callable[[UpstreamRequest], Awaitable[MemoryResponse]]


class MemoryTransport:
    def __init__(self, handler: Handler) -> None:
        self.requests: list[UpstreamRequest] = []
        self._handler = handler
        self._started = False
        self._closed = False

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        self._closed = True

    async def send(self, request: UpstreamRequest) -> MemoryResponse:
        assert self._started and not self._closed, "transport used outside start() .. close()"
        self.requests.append(request)
        try:
            async with asyncio.timeout(request.timeout_s):
                return await self._handler(request)
        except TimeoutError:
            raise UpstreamTimeout("no response in time") from None


async def _iterate(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
