"""Running a response while watching for the client to leave, and server-sent events:
OpenAI's `data: ...` frames and the typed `event: <type>` + `data: ...` frames of the
Responses and Anthropic streams.

vLLM aborts a request whose client disconnects, and the gateway's tests rely on the
stand-in doing the same. Uvicorn only tells an application through `receive()` returning
http.disconnect (its `send` to a closed connection silently does nothing), so the work runs
in its own task next to a watcher on `receive()`, and is cancelled when the watcher fires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any, TypeVar

import orjson
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

_EVENT_STREAM_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(work: Coroutine[Any, Any, T], receive: Receive) -> T | None:
    """Run `work` to its end, or cancel it when the client disconnects (then None).

    The request body must already have been read: after it, `receive()` only ever returns
    http.disconnect. The work must not complete the response itself, since completing it
    also makes `receive()` return http.disconnect."""
    work_task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait((work_task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work_task.done():
            work_task.cancel()
        watcher.cancel()
    with suppress(asyncio.CancelledError):
        return await work_task
    return None


def data_frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def typed_frame(event: dict[str, object]) -> bytes:
    """A typed event: its `type` also names the frame."""
    return b"event: %s\ndata: %s\n\n" % (str(event["type"]).encode(), orjson.dumps(event))


class EventWriter:
    """Sends the response head and event frames; never completes the response."""

    def __init__(self, send: Send):
        self._send = send

    async def start(self) -> None:
        await self._send(
            {"type": "http.response.start", "status": 200, "headers": _EVENT_STREAM_HEADERS}
        )

    async def send(self, frame: bytes) -> None:
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})


class EventStream:
    """An ASGI response for an endpoint to return: `write` sends the events and returns
    whether the stream ended properly. If not, the response is left incomplete and uvicorn
    closes the connection mid-body, which is how a crashed upstream looks to a client."""

    def __init__(self, write: Callable[[EventWriter], Awaitable[bool]]):
        self._write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def run() -> bool:
            return await self._write(EventWriter(send))

        if await unless_disconnected(run(), receive):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
