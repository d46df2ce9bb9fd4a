"""The in-memory transport: answers from a callable, streams that wait, and a close or cut
that ends a stream under its pending read, as the HTTP transport's responses do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.core.errors import (
    GatewayError,
    UpstreamBadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstream.base import Transport, UpstreamRequest
from gateway.upstream.memory import MemoryResponse, MemoryTransport


async def started(transport: MemoryTransport) -> Transport:
    """Started, and typed as the protocol it stands in for."""
    await transport.start()
    return transport


async def test_a_whole_answer_and_the_requests_it_answered() -> None:
    async def handler(request: UpstreamRequest) -> MemoryResponse:
        return MemoryResponse(201, b"got " + (request.body or b""), content_type="text/plain")

    memory = MemoryTransport(handler)
    transport = await started(memory)
    request = UpstreamRequest("POST", "http://replica/v1/completions", b"{}")
    response = await transport.send(request)
    assert (response.status, response.content_type) == (201, "text/plain")
    assert await response.read() == b"got {}"
    assert memory.requests == [request]


async def test_chunks_come_one_by_one_and_read_joins_them() -> None:
    async def handler(request: UpstreamRequest) -> MemoryResponse:
        return MemoryResponse(200, chunks=[b"data: 1\n\n", b"data: 2\n\n"])

    transport = await started(MemoryTransport(handler))
    stream = await transport.send(UpstreamRequest("POST", "http://replica/", stream=True))
    assert [chunk async for chunk in stream.chunks()] == [b"data: 1\n\n", b"data: 2\n\n"]
    whole = await transport.send(UpstreamRequest("POST", "http://replica/"))
    assert await whole.read() == b"data: 1\n\ndata: 2\n\n"


async def _one_chunk_then_wait() -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    await asyncio.sleep(3600)
    yield b"data: never\n\n"


async def _pending_read() -> tuple[MemoryResponse, asyncio.Future[bytes]]:
    response = MemoryResponse(200, chunks=_one_chunk_then_wait())
    chunks = response.chunks()
    assert await anext(chunks) == b"data: 1\n\n"
    read = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.01)
    assert not read.done()
    return response, read


async def test_a_cut_makes_the_pending_read_raise_its_error() -> None:
    response, read = await _pending_read()
    error = GatewayError(503, "shutting down", "server_error")
    response.cut(error)
    with pytest.raises(GatewayError) as raised:
        await read
    assert raised.value is error
    assert response.closed
    with pytest.raises(GatewayError) as again:  # and every later read
        await response.read()
    assert again.value is error


async def test_closing_under_a_read_breaks_it_off() -> None:
    response, read = await _pending_read()
    response.close()
    with pytest.raises(UpstreamBadGateway):
        await read


async def test_a_cut_before_the_first_read() -> None:
    response = MemoryResponse(200, chunks=[b"data: 1\n\n"])
    response.cut(UpstreamTimeout("cut"))
    with pytest.raises(UpstreamTimeout):
        await anext(response.chunks())


async def test_a_stream_that_breaks_off_raises_what_its_source_raises() -> None:
    async def breaking() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise UpstreamBadGateway("the stream broke off (test)")

    response = MemoryResponse(200, chunks=breaking())
    with pytest.raises(UpstreamBadGateway, match="broke off"):
        [chunk async for chunk in response.chunks()]


async def test_the_handler_fails_the_call_and_timeout_s_bounds_it() -> None:
    async def handler(request: UpstreamRequest) -> MemoryResponse:
        if request.url.endswith("/down"):
            raise UpstreamUnavailable("cannot connect (test)")
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    transport = await started(MemoryTransport(handler))
    with pytest.raises(UpstreamUnavailable):
        await transport.send(UpstreamRequest("GET", "http://replica/down"))
    with pytest.raises(UpstreamTimeout):
        await transport.send(UpstreamRequest("GET", "http://replica/slow", timeout_s=0.01))


async def test_it_is_used_only_between_start_and_close() -> None:
    async def handler(request: UpstreamRequest) -> MemoryResponse:
        return MemoryResponse(200)

    transport = MemoryTransport(handler)
    with pytest.raises(AssertionError):
        await transport.send(UpstreamRequest("GET", "http://replica/"))
    await transport.start()
    await transport.close()
    with pytest.raises(AssertionError):
        await transport.send(UpstreamRequest("GET", "http://replica/"))
