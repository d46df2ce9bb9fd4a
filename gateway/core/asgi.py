"""The few ASGI primitives the gateway needs, without a framework on the hot path.

Reading the body ourselves lets an oversized request be refused with 413 as soon as it
crosses the limit, and sending raw messages keeps each relayed stream chunk to one dict.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any

from gateway.core.errors import PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
# an SSE answer's headers: no caching, and no buffering in a proxy in between
STREAM_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header `name` (lower-case), if present."""
    headers: Headers = scope["headers"]
    for key, value in headers:
        if key == name:
            return value
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"Request body is larger than the gateway's limit of {limit} bytes."
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers,
    content_type: bytes = b"application/json",
) -> None:
    headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


SignalHandler = Callable[[int, FrameType | None], Any]


def call_after_shutdown_signal(delay_s: float, callback: Callable[[], None]) -> None:
    """Call `callback` in the running event loop `delay_s` after the server is told to stop.

    uvicorn stops on SIGINT or SIGTERM (its handlers are in place before the lifespan starts),
    then waits for the requests in flight; its handlers are wrapped here so that the gateway
    learns when that wait began. Where no server handles these signals (not the main thread,
    or the default handlers) nothing is installed: there is no drain to time.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def start_timer() -> None:
        if not timers:  # a second signal does not restart the drain
            timers.append(loop.call_later(delay_s, callback))

    def after_server(server_handler: SignalHandler) -> SignalHandler:
        def handler(signum: int, frame: FrameType | None) -> None:
            server_handler(signum, frame)
            if not loop.is_closed():
                loop.call_soon_threadsafe(start_timer)

        return handler

    for signum in (signal.SIGINT, signal.SIGTERM):
        server_handler = signal.getsignal(signum)
        if callable(server_handler):
            signal.signal(signum, after_server(server_handler))
