"""Relay vLLM's answer to the client: whole bodies as bytes, streams event by event.

Streams are forwarded as soon as a complete SSE event is in (no buffering beyond one event);
only events that mention ``usage`` are parsed, to learn the request's usage and to drop the
usage-only chunk the gateway asked for on the client's behalf. A client that disconnects makes
the gateway close the upstream connection at once, which is how vLLM learns to abort. On
shutdown, the streams still running when `server.drain_timeout_s` is up are ended by the
gateway (`StreamDrain`): their upstream connections are closed and each client gets a final
error event, so that they are told and counted as errors rather than cut off as if served.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from gateway.core.asgi import Receive, Send, send_response
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, UpstreamBadGateway, UpstreamTimeout
from gateway.core.status import CLIENT_CLOSED_REQUEST
from gateway.safety.output_guard import OutputGuard
from gateway.upstream.transport import UpstreamTransport, as_openai_error, drop_traceback

_EVENT_END = b"\n\n"
_DONE = b"data: [DONE]\n\n"
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class _DrainTimeUp(Exception):
    """Set into a stream's body when the shutdown's drain time is up; its next read raises it."""


class StreamDrain:
    """The streams this process is relaying, so that a shutdown can end those that outlive
    its drain time: each one's upstream connection is closed (vLLM aborts the request) and
    the relay ends the stream with a 503 error event."""

    def __init__(self) -> None:
        self._responses: set[aiohttp.ClientResponse] = set()
        self._time_up = False

    def add(self, response: aiohttp.ClientResponse) -> None:
        self._responses.add(response)
        if self._time_up:  # its headers came after the drain time was up
            _cut(response)

    def discard(self, response: aiohttp.ClientResponse) -> None:
        self._responses.discard(response)

    def end_all(self) -> None:
        self._time_up = True
        for response in self._responses:
            _cut(response)


def _cut(response: aiohttp.ClientResponse) -> None:
    # Set before close(), which then leaves it in place of aiohttp's "Connection closed".
    response.content.set_exception(_DrainTimeUp())
    response.close()


# One per process, as the shutdown signal is (gateway/app.py arms it at startup).
in_flight_streams = StreamDrain()


async def relay_whole(
    ctx: RequestContext,
    transport: UpstreamTransport,
    response: aiohttp.ClientResponse,
    rename: tuple[bytes, bytes] | None,
    guard: OutputGuard | None,
    send: Send,
) -> None:
    """Forward a non-streamed answer (or an upstream error) with the upstream's status."""
    try:
        body = await transport.read(ctx, response)
    finally:
        response.release()
    if response.status >= 400:
        error = as_openai_error(response.status, body)
        if error is not None:
            raise error
    else:
        if rename is not None:
            body = body.replace(*rename)
        if guard is not None:
            body = guard.process_whole(body)
        if b'"usage"' in body:
            ctx.usage = orjson.loads(body).get("usage")
    ctx.status = response.status
    content_type = response.headers.get("content-type", "application/json").encode()
    await send_response(send, response.status, body, ctx.response_headers(), content_type)


async def relay_stream(
    ctx: RequestContext,
    response: aiohttp.ClientResponse,
    rename: tuple[bytes, bytes] | None,
    guard: OutputGuard | None,
    receive: Receive,
    send: Send,
) -> None:
    """Forward an SSE stream event by event; end a broken one with an error event."""
    ctx.status = response.status
    headers = ctx.response_headers()
    headers.extend(_STREAM_HEADERS)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    watcher = asyncio.create_task(_close_on_disconnect(receive, response, ctx))
    in_flight_streams.add(response)
    pending = b""
    last_sent = b""
    failure: GatewayError | None = None
    try:
        async for data in response.content.iter_any():
            if pending:
                data = pending + data
            end = data.rfind(_EVENT_END) + 2
            if end < 2:
                pending = data
                continue
            if end == len(data):
                events, pending = data, b""
            else:
                events, pending = data[:end], data[end:]
            if rename is not None:
                events = events.replace(*rename)
            if b'"usage"' in events:
                events = _take_usage(ctx, events)
                if not events:
                    continue
            blocked = False
            if guard is not None:
                events, blocked = guard.process_events(events)
            await send({"type": "http.response.body", "body": events, "more_body": True})
            if ctx.first_event_at is None:
                ctx.first_event_at = time.perf_counter()
            ctx.streamed_events += events.count(b"data: ")
            last_sent = events
            if blocked:  # the guard ended the stream: stop vLLM's generation now
                response.close()
                break
    except TimeoutError:
        failure = UpstreamTimeout("the stream stalled")
    except _DrainTimeUp:
        failure = GatewayError(
            503,
            "The gateway is shutting down; send the request again.",
            "server_error",
            None,
            "gateway_shutting_down",
        )
    except aiohttp.ClientError as exc:
        drop_traceback(exc)  # a client disconnect lands here, with aiohttp's shared instance
        failure = UpstreamBadGateway(f"the stream broke off ({type(exc).__name__})")
    finally:
        watcher.cancel()
        in_flight_streams.discard(response)
        response.release()
    if ctx.status == CLIENT_CLOSED_REQUEST:
        return
    if failure is None and not last_sent.endswith(_DONE):
        failure = UpstreamBadGateway("the stream ended before [DONE]")
    if failure is not None:
        ctx.status = failure.status
        event = b"data: " + failure.body() + _EVENT_END
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close_on_disconnect(
    receive: Receive, response: aiohttp.ClientResponse, ctx: RequestContext
) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    ctx.status = CLIENT_CLOSED_REQUEST
    response.close()


def _take_usage(ctx: RequestContext, events: bytes) -> bytes:
    """Record usage from the events that carry it; drop the usage-only chunk unless asked for."""
    kept = []
    for event in events.split(_EVENT_END)[:-1]:
        if b'"usage"' in event and event.startswith(b"data: {"):
            chunk = orjson.loads(event[6:])
            usage = chunk.get("usage")
            if usage:
                ctx.usage = usage
                if not chunk.get("choices") and not ctx.client_wants_usage:
                    continue
        kept.append(event + _EVENT_END)
    return b"".join(kept)
