"""The stream relay against a real socket upstream: what a client that hangs up leaves behind."""

from __future__ import annotations

import asyncio
import gc

from aiohttp import client_reqrep

from gateway.core.asgi import Message
from gateway.core.context import RequestContext
from gateway.core.status import CLIENT_CLOSED_REQUEST
from gateway.pipeline.relay import StreamDrain, relay_stream
from gateway.settings import UpstreamSettings
from gateway.surfaces import ChatCompletions
from gateway.upstream.client import UpstreamClient
from gateway.upstream.http import HttpTransport
from tests.gateway.upstream.servers import HoldingServer, traceback_depth

DISCONNECTS = 2000


async def _relay_until_the_client_hangs_up(upstream: UpstreamClient, url: str) -> int:
    ctx = RequestContext("disconnecting")
    first_event_sent = asyncio.Event()

    async def receive() -> Message:
        await first_event_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            first_event_sent.set()

    response = await upstream.post(ctx, url, b"{}", stream=True)
    await relay_stream(ctx, ChatCompletions(), response, [], None, StreamDrain(1.0), receive, send)
    return ctx.status


async def test_client_disconnects_leave_nothing_behind() -> None:
    transport = HttpTransport(UpstreamSettings())
    await transport.start()
    upstream = UpstreamClient(transport, None)
    try:
        async with HoldingServer() as server:
            url = server.url + "/v1/chat/completions"
            for _ in range(DISCONNECTS):
                assert (
                    await _relay_until_the_client_hangs_up(upstream, url) == CLIENT_CLOSED_REQUEST
                )
    finally:
        await transport.close()
    gc.collect()
    # aiohttp fails every read of a closed response with this one instance (see
    # gateway/upstream/http.py, drop_traceback): before the fix, each disconnect added
    # 4 frames to its traceback, and those frames kept every request's objects alive.
    assert traceback_depth(client_reqrep._CONNECTION_CLOSED_EXCEPTION.__traceback__) < 10
    assert sum(isinstance(obj, RequestContext) for obj in gc.get_objects()) < 10
