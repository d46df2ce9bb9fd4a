"""Relay vLLM's answer to the client: whole bodies as bytes, streams event by event.

Streams are forwarded as soon as a complete SSE event is in (no buffering beyond one event),
through the request's chunk filters (gateway/core/filters.py: rename, output guard, usage).
A client that disconnects makes the gateway close the upstream connection at once, which is
how vLLM learns to abort. On shutdown, the streams still running when
`server.drain_timeout_s` is up are ended by the gateway (`StreamDrain`): their upstream
connections are closed and each client gets a final error event, so that they are told and
counted as errors rather than cut off as if served.
"""

from __future__ import annotations

import asyncio
import time

from gateway.core.asgi import (
    STREAM_HEADERS,
    Receive,
    Send,
    call_after_shutdown_signal,
    send_response,
)
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, ServiceUnavailable, UpstreamBadGateway
from gateway.core.filters import ChunkFilter, HoldingFilter
from gateway.core.status import CLIENT_CLOSED_REQUEST
from gateway.observability import tracing
from gateway.surfaces import Surface
from gateway.upstream.base import UpstreamResponse
from gateway.upstream.client import UpstreamClient

_EVENT_END = b"\n\n"


class StreamDrain:
    """The streams a gateway process is relaying, so that a shutdown can end those that
    outlive its drain time: each one's upstream connection is cut (vLLM aborts the request)
    and the relay ends the stream with a 503 error event."""

    def __init__(self, drain_timeout_s: float) -> None:
        self._drain_timeout_s = drain_timeout_s
        self._responses: set[UpstreamResponse] = set()
        self._time_up = False

    async def start(self) -> None:
        """Armed once the gateway serves: the shutdown signal starts the drain time."""
        call_after_shutdown_signal(self._drain_timeout_s, self.end_all)

    def add(self, response: UpstreamResponse) -> None:
        self._responses.add(response)
        if self._time_up:  # its headers came after the drain time was up
            response.cut(_shutting_down())

    def discard(self, response: UpstreamResponse) -> None:
        self._responses.discard(response)

    def end_all(self) -> None:
        self._time_up = True
        for response in self._responses:
            response.cut(_shutting_down())


def _shutting_down() -> GatewayError:
    return ServiceUnavailable(
        "The gateway is shutting down; send the request again.", "gateway_shutting_down"
    )


async def relay_whole(
    ctx: RequestContext,
    surface: Surface,
    upstream: UpstreamClient,
    response: UpstreamResponse,
    filters: list[ChunkFilter],
    holding: HoldingFilter | None,
    send: Send,
) -> None:
    """Forward a non-streamed answer (or an upstream error, in the surface's error format)
    with the upstream's status."""
    try:
        body = await upstream.read(ctx, response)
    finally:
        response.release()
    if response.status >= 400:
        error = surface.upstream_error(response.status, body)
        if error is not None:
            raise error
    else:
        for chunk_filter in filters:
            body = chunk_filter.on_whole(body)
        if holding is not None:
            body += await holding.release()
    ctx.status = response.status
    content_type = response.content_type.encode()
    await send_response(send, response.status, body, ctx.response_headers(), content_type)


async def relay_stream(
    ctx: RequestContext,
    surface: Surface,
    response: UpstreamResponse,
    filters: list[ChunkFilter],
    holding: HoldingFilter | None,
    drain: StreamDrain,
    receive: Receive,
    send: Send,
) -> None:
    """Forward an SSE stream event by event; end a broken one with an error event."""
    ctx.status = response.status
    headers = ctx.response_headers()
    headers.extend(STREAM_HEADERS)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    watcher = asyncio.create_task(_close_on_disconnect(receive, response, ctx))
    drain.add(response)
    pending = b""
    last_sent = b""
    failure: GatewayError | None = None
    try:
        async for data in response.chunks():
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
            ended = False
            for chunk_filter in filters:
                events = chunk_filter.on_events(events)
                if chunk_filter.ended:
                    ended = True
                if not events:
                    break
            if not events:
                continue
            await send({"type": "http.response.body", "body": events, "more_body": True})
            if ctx.first_event_at is None:
                ctx.first_event_at = time.perf_counter()
            ctx.streamed_events += events.count(b"data: ")
            last_sent = events
            if ended:  # a filter ended the stream: stop vLLM's generation now
                response.close()
                break
    except GatewayError as error:  # stalled, broke off, or cut by the drain
        failure = error
    finally:
        watcher.cancel()
        drain.discard(response)
        response.release()
    if ctx.status == CLIENT_CLOSED_REQUEST:
        return
    if failure is None and holding is not None and (tail := await holding.release()):
        await send({"type": "http.response.body", "body": tail, "more_body": True})
        ctx.streamed_events += tail.count(b"data: ")
        last_sent = tail
    if failure is None and not surface.stream_finished(last_sent):
        failure = UpstreamBadGateway("the stream ended before its end event")
    if failure is not None:
        ctx.status = failure.status
        tracing.failed(failure)
        await send(
            {"type": "http.response.body", "body": surface.stream_error(failure), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close_on_disconnect(
    receive: Receive, response: UpstreamResponse, ctx: RequestContext
) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    ctx.status = CLIENT_CLOSED_REQUEST
    response.close()
