"""The upstream transport against a real socket server that drops pooled connections, as
vLLM does with a keep-alive connection it has held idle for 5 s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.settings import UpstreamSettings
from gateway.upstream.transport import UpstreamTransport

ANSWER = b'{"ok": true}'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
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
