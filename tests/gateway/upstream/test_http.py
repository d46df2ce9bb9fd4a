"""The HTTP transport against real socket servers: one that drops pooled connections, as vLLM
does with a keep-alive connection it has held idle for 5 s, and one that paces a stream (its
head, then each event) to check which timeout bounds which wait; and what a response closed
or cut under a pending read raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import client_reqrep

from gateway.core.context import RequestContext
from gateway.core.errors import (
    GatewayError,
    UpstreamBadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.settings import UpstreamSettings
from gateway.upstream.base import UpstreamRequest, UpstreamResponse
from gateway.upstream.client import UpstreamClient
from gateway.upstream.http import HttpTransport
from tests.fixtures.processes import free_port
from tests.gateway.upstream.servers import (
    ANSWER,
    EVENT,
    DroppingServer,
    HoldingServer,
    PacedStreamServer,
    traceback_depth,
)


@pytest_asyncio.fixture(loop_scope="function")
async def transport() -> AsyncIterator[HttpTransport]:
    transport = HttpTransport(UpstreamSettings(connect_timeout_s=2.0))
    await transport.start()
    yield transport
    await transport.close()


async def post(transport: HttpTransport, server: DroppingServer) -> bytes:
    client = UpstreamClient(transport, None)
    ctx = RequestContext("test")
    response = await client.post(ctx, server.url + "/v1/completions", b"{}", stream=False)
    return await client.read(ctx, response)


async def test_request_on_a_connection_the_server_closed_goes_again(
    transport: HttpTransport,
) -> None:
    async with DroppingServer() as server:
        assert await post(transport, server) == ANSWER
        # the pooled connection is closed under the second request: sent again, answered
        assert await post(transport, server) == ANSWER
        assert server.connections == 2


async def test_a_server_that_never_answers_is_a_502_after_one_retry(
    transport: HttpTransport,
) -> None:
    async with DroppingServer(answer=False) as server:
        with pytest.raises(UpstreamBadGateway):
            await post(transport, server)
        assert server.connections == 2


async def test_no_compression_is_asked_for(transport: HttpTransport) -> None:
    """Bodies are relayed and parsed as they come: a server that would gzip must not."""
    async with DroppingServer() as server:
        await post(transport, server)
    [head] = server.heads
    assert b"accept-encoding" not in head.lower()
    assert b"user-agent" not in head.lower()


async def test_a_refused_connection_is_unavailable(transport: HttpTransport) -> None:
    request = UpstreamRequest("GET", f"http://127.0.0.1:{free_port()}/health")
    with pytest.raises(UpstreamUnavailable) as failed:
        await transport.send(request)
    assert failed.value.status == 503


async def stream_events(settings: UpstreamSettings, server: PacedStreamServer) -> int:
    """Post a stream through a transport with `settings`; the number of events read."""
    transport = HttpTransport(settings)
    await transport.start()
    try:
        client = UpstreamClient(transport, None)
        url = server.url + "/v1/completions"
        response = await client.post(RequestContext("test"), url, b"{}", stream=True)
        body = b"".join([data async for data in response.chunks()])
        return body.count(b"data: ")
    finally:
        await transport.close()


async def test_stream_headers_may_take_up_to_the_first_byte_timeout() -> None:
    """The wait for a stream's headers is the first-byte wait, not the (shorter) idle one."""
    settings = UpstreamSettings(first_byte_timeout_s=10.0, stream_idle_timeout_s=0.2)
    async with PacedStreamServer(head_delay_s=1.0, gaps_s=(0.0, 0.0)) as server:
        assert await stream_events(settings, server) == 2


async def test_stream_headers_later_than_the_first_byte_timeout_are_504() -> None:
    settings = UpstreamSettings(first_byte_timeout_s=0.3, stream_idle_timeout_s=10.0)
    async with PacedStreamServer(head_delay_s=10.0, gaps_s=()) as server:
        with pytest.raises(UpstreamTimeout) as failed:
            await stream_events(settings, server)
    assert failed.value.status == 504


@pytest.mark.parametrize("gaps_s", [(1.5,), (0.0, 1.5)], ids=["before-first-event", "between"])
async def test_stream_gaps_after_the_headers_are_bounded_by_the_idle_timeout(
    gaps_s: tuple[float, ...],
) -> None:
    """A gap longer than the idle timeout (yet shorter than the first-byte one) fails the read."""
    settings = UpstreamSettings(first_byte_timeout_s=10.0, stream_idle_timeout_s=0.2)
    async with PacedStreamServer(head_delay_s=0.0, gaps_s=gaps_s) as server:
        with pytest.raises(UpstreamTimeout, match="the stream stalled"):
            await stream_events(settings, server)


@pytest.mark.parametrize(
    ("head_delay_s", "gaps_s"), [(10.0, ()), (0.0, (10.0,))], ids=["headers", "body"]
)
async def test_a_request_timeout_bounds_the_whole_call(
    transport: HttpTransport, head_delay_s: float, gaps_s: tuple[float, ...]
) -> None:
    """A control call's `timeout_s` holds for its headers and its body alike."""
    async with PacedStreamServer(head_delay_s, gaps_s) as server:
        request = UpstreamRequest("POST", server.url, b"{}", timeout_s=0.3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout):
            response = await transport.send(request)
            await response.read()
    assert asyncio.get_running_loop().time() - started < 5.0


async def _pending_read(
    transport: HttpTransport, server: HoldingServer
) -> tuple[UpstreamResponse, asyncio.Future[bytes]]:
    """A stream whose first event is read and whose next read waits: (response, that read)."""
    request = UpstreamRequest("POST", server.url, b"{}", stream=True)
    response = await transport.send(request)
    chunks = response.chunks()
    assert await anext(chunks) == EVENT
    read = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.01)
    assert not read.done()
    return response, read


async def test_a_cut_makes_the_pending_read_raise_its_error(transport: HttpTransport) -> None:
    async with HoldingServer() as server:
        response, read = await _pending_read(transport, server)
        error = GatewayError(503, "shutting down", "server_error")
        response.cut(error)
        with pytest.raises(GatewayError) as raised:
            await read
    assert raised.value is error


async def test_closing_under_a_read_breaks_it_off_and_leaves_nothing_behind(
    transport: HttpTransport,
) -> None:
    """What a client disconnect does to the stream it was sent."""
    async with HoldingServer() as server:
        for _ in range(200):
            response, read = await _pending_read(transport, server)
            response.close()
            with pytest.raises(UpstreamBadGateway, match="the stream broke off"):
                await read
    # aiohttp fails every read of a closed response with this one instance (drop_traceback):
    # unless dropped, each close under a read adds its frames to its traceback, and those
    # frames keep every request's objects alive.
    assert traceback_depth(client_reqrep._CONNECTION_CLOSED_EXCEPTION.__traceback__) < 10
