"""The upstream transport against real socket servers: one that drops pooled connections, as
vLLM does with a keep-alive connection it has held idle for 5 s, and one that paces a stream
(its head, then each event) to check which timeout bounds which wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.settings import UpstreamSettings
from gateway.upstream.transport import UpstreamTransport

ANSWER = b'{"ok": true}'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


class DroppingServer:
    """Answers one request per connection, then closes the connection when the next request
    arrives on it, unanswered: the request a client sends on a connection that the server is
    closing. With `answer=False` it answers nothing at all."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await _read_request(reader)
            if self.answer:
                writer.write(RESPONSE)
                await writer.drain()
                await _read_request(reader)
        except asyncio.IncompleteReadError:
            pass
        writer.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)


@pytest_asyncio.fixture(loop_scope="function")
async def transport() -> AsyncIterator[UpstreamTransport]:
    transport = UpstreamTransport(UpstreamSettings(connect_timeout_s=2.0))
    await transport.start()
    yield transport
    await transport.close()


async def post(transport: UpstreamTransport, server: DroppingServer) -> bytes:
    ctx = RequestContext("test")
    response = await transport.post(ctx, server.url + "/v1/completions", b"{}", stream=False)
    return await transport.read(ctx, response)


async def test_request_on_a_connection_the_server_closed_goes_again(
    transport: UpstreamTransport,
) -> None:
    server = DroppingServer()
    await server.start()
    try:
        assert await post(transport, server) == ANSWER
        # the pooled connection is closed under the second request: sent again, answered
        assert await post(transport, server) == ANSWER
        assert server.connections == 2
    finally:
        await server.stop()


async def test_a_server_that_never_answers_is_a_502_after_one_retry(
    transport: UpstreamTransport,
) -> None:
    server = DroppingServer(answer=False)
    await server.start()
    try:
        with pytest.raises(GatewayError) as failed:
            await post(transport, server)
        assert failed.value.status == 502
        assert server.connections == 2
    finally:
        await server.stop()


class PacedStreamServer:
    """Answers a stream's head after `head_delay_s`, then one SSE event after each of `gaps_s`,
    then ends the stream."""

    def __init__(self, head_delay_s: float, gaps_s: tuple[float, ...]) -> None:
        self.head_delay_s = head_delay_s
        self.gaps_s = gaps_s
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> PacedStreamServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/completions"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        event = b"data: {}\n\n"
        try:
            await _read_request(reader)
            if await _client_hangs_up_within(reader, self.head_delay_s):
                return
            writer.write(STREAM_HEAD)
            for gap_s in self.gaps_s:
                if await _client_hangs_up_within(reader, gap_s):
                    return
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _client_hangs_up_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait `seconds`, or less if the client closes its connection (then True): no handler
    outlives its test."""
    try:
        await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return False
    return True


async def stream_events(settings: UpstreamSettings, server: PacedStreamServer) -> int:
    """Post a stream through a transport with `settings`; the number of events read."""
    transport = UpstreamTransport(settings)
    await transport.start()
    try:
        ctx = RequestContext("test")
        response = await transport.post(ctx, server.url, b"{}", stream=True)
        body = b"".join([data async for data in response.content.iter_any()])
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
        with pytest.raises(GatewayError) as failed:
            await stream_events(settings, server)
    assert failed.value.status == 504


@pytest.mark.parametrize("gaps_s", [(1.5,), (0.0, 1.5)], ids=["before-first-event", "between"])
async def test_stream_gaps_after_the_headers_are_bounded_by_the_idle_timeout(
    gaps_s: tuple[float, ...],
) -> None:
    """A gap longer than the idle timeout (yet shorter than the first-byte one) fails the read."""
    settings = UpstreamSettings(first_byte_timeout_s=10.0, stream_idle_timeout_s=0.2)
    async with PacedStreamServer(head_delay_s=0.0, gaps_s=gaps_s) as server:
        with pytest.raises(TimeoutError):
            await stream_events(settings, server)
