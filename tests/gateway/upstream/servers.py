"""Socket servers that answer as a model server can, well or badly, each on a free local port
for the length of an `async with`: for the HTTP transport's tests and the relay's."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

ANSWER = b'{"ok": true}'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
EVENT = b"data: {}\n\n"


class SocketServer:
    """`url` is the base URL while it runs; `serve` handles each connection."""

    def __init__(self) -> None:
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class DroppingServer(SocketServer):
    """Answers one request per connection, then closes the connection when the next request
    arrives on it, unanswered: the request a client sends on a connection that the server is
    closing. With `answer=False` it answers nothing at all. `heads` holds the request heads."""

    def __init__(self, answer: bool = True) -> None:
        super().__init__()
        self.answer = answer
        self.connections = 0
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            self.heads.append(await read_request(reader))
            if self.answer:
                writer.write(RESPONSE)
                await writer.drain()
                await read_request(reader)
        except asyncio.IncompleteReadError:
            pass
        writer.close()


class PacedStreamServer(SocketServer):
    """Answers a stream's head after `head_delay_s`, then one SSE event after each of `gaps_s`,
    then ends the stream."""

    def __init__(self, head_delay_s: float, gaps_s: tuple[float, ...]) -> None:
        super().__init__()
        self.head_delay_s = head_delay_s
        self.gaps_s = gaps_s

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            if await _client_hangs_up_within(reader, self.head_delay_s):
                return
            writer.write(STREAM_HEAD)
            for gap_s in self.gaps_s:
                if await _client_hangs_up_within(reader, gap_s):
                    return
                writer.write(b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class HoldingServer(SocketServer):
    """Answers a stream's head and first event (`EVENT`), then sends nothing until the client
    hangs up."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(STREAM_HEAD + b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
            await writer.drain()
            await reader.read()
        except ConnectionError:
            pass
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request's head (it must have a content-length); its body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head


async def _client_hangs_up_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait `seconds`, or less if the client closes its connection (then True): no handler
    outlives its test."""
    try:
        await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return False
    return True


def traceback_depth(traceback: TracebackType | None) -> int:
    depth = 0
    while traceback is not None:
        depth += 1
        traceback = traceback.tb_next
    return depth
