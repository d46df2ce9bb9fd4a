"""The stream relay against a real socket upstream: what a client that hangs up leaves behind."""

from __future__ import annotations

import asyncio
import gc
from types import TracebackType

from aiohttp import client_reqrep

from gateway.core.asgi import Message
from gateway.core.context import RequestContext
from gateway.core.status import CLIENT_CLOSED_REQUEST
from gateway.pipeline.relay import relay_stream
from gateway.settings import UpstreamSettings
from gateway.upstream.transport import UpstreamTransport

DISCONNECTS = 2000
_EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def _one_event_then_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a stream's head and first event, then send nothing until the gateway hangs up."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(_HEAD + b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT))
        await writer.drain()
        await reader.read()
    except ConnectionError:
        pass
    writer.close()


async def _relay_until_the_client_hangs_up(transport: UpstreamTransport, url: str) -> int:
    ctx = RequestContext("disconnecting")
    first_event_sent = asyncio.Event()

    async def receive() -> Message:
        await first_event_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            first_event_sent.set()

    response = await transport.post(ctx, url, b"{}", stream=True)
    await relay_stream(ctx, response, None, None, receive, send)
    return ctx.status


def _depth(traceback: TracebackType | None) -> int:
    depth = 0
    while traceback is not None:
        depth += 1
        traceback = traceback.tb_next
    return depth


async def test_client_disconnects_leave_nothing_behind() -> None:
    upstream = await asyncio.start_server(_one_event_then_hold, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    transport = UpstreamTransport(UpstreamSettings())
    await transport.start()
    try:
        for _ in range(DISCONNECTS):
            assert await _relay_until_the_client_hangs_up(transport, url) == CLIENT_CLOSED_REQUEST
    finally:
        await transport.close()
        upstream.close()
        await upstream.wait_closed()
    gc.collect()
    # aiohttp fails every read of a closed response with this one instance (see
    # gateway/upstream/transport.py, drop_traceback): before the fix, each disconnect added
    # 4 frames to its traceback, and those frames kept every request's objects alive.
    assert _depth(client_reqrep._CONNECTION_CLOSED_EXCEPTION.__traceback__) < 10
    assert sum(isinstance(obj, RequestContext) for obj in gc.get_objects()) < 10
