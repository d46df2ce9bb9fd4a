"""Background responses (`background: true`): answered at once with the queued response, then
run to their end by this process whatever the client does, their events kept in the store.

The run is the ordinary upstream call and relay, given a `send` that appends the events to
the store and a `receive` that reports a disconnect when the response is cancelled (from any
instance: the run looks at the stored status, gateway/surfaces/responses_state.py). A client
that asked for a stream is served the stored events as they come, the same way as a later
`GET /v1/responses/{id}?stream=true`. The request's usage record is written when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson

from gateway.core.asgi import Message, Receive, Send, send_response
from gateway.core.errors import GatewayError, InternalServerError, ServiceUnavailable
from gateway.pipeline.stages import Call
from gateway.surfaces.responses_state import KeptResponse, ResponseKeeper, stream_stored

logger = logging.getLogger("gateway.responses")
Run = Callable[[Call, Receive, Send], Awaitable[None]]
_DISCONNECT: Message = {"type": "http.disconnect"}


class BackgroundRuns:
    """The background responses this process runs; a component (closed at shutdown: the
    runs still going are stopped and stored as failed)."""

    def __init__(self, keeper: ResponseKeeper) -> None:
        self._keeper = keeper
        self._runs: set[asyncio.Task[None]] = set()

    async def begin(self, call: Call, run: Run, receive: Receive, send: Send) -> None:
        kept = call.kept
        assert kept is not None and kept.record is not None
        ctx = call.ctx
        if call.admission is not None:  # a refusal is the client's answer, before queueing
            reservation = await call.admission.confirmed()
            ctx.extra_headers.extend(call.surface.limit_headers(reservation.headers))
        queued = await kept.queue(call.request.body, ctx.public_model)
        task = asyncio.create_task(self._run(call, run, kept))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        ctx.detached = task
        ctx.status = 200
        if not call.request.stream:
            await send_response(send, 200, orjson.dumps(queued), ctx.response_headers())
            return
        await stream_stored(self._keeper, kept.record, -1, ctx.response_headers(), send)

    async def _run(self, call: Call, run: Run, kept: KeptResponse) -> None:
        call.ctx.stream = True
        refusal: list[bytes] = []  # vLLM's error answer, relayed as it came

        async def cancelled() -> Message:
            await kept.watch()
            return _DISCONNECT

        async def to_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    refusal.append(b"")
            elif refusal:
                refusal.append(message.get("body", b""))
            elif not kept.released:  # what the release hands back, it has stored itself
                await kept.append(message.get("body", b""))

        try:
            await kept.start()
            await run(call, cancelled, to_store)
        except GatewayError as error:
            call.ctx.status = error.status
            await kept.fail(error)
        except asyncio.CancelledError:
            await kept.fail(
                ServiceUnavailable(
                    "The gateway stopped before the response ended.", "gateway_shutting_down"
                )
            )
            raise
        except Exception:
            logger.exception("background response %s failed", kept.record and kept.record.id)
            call.ctx.status = 500
            await kept.fail(InternalServerError("The gateway failed; see its log."))
        else:
            if refusal:
                await kept.fail(relayed_error(call.ctx.status, b"".join(refusal)))
            elif not kept.released:  # the stream broke off: its last event says why
                await kept.fail(
                    ServiceUnavailable(
                        "The response ended before it was complete.", "upstream_stream_cut"
                    )
                )

    async def close(self) -> None:
        for task in self._runs:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._runs, return_exceptions=True)


def relayed_error(status: int, body: bytes) -> GatewayError:
    """An error answer vLLM gave (in OpenAI's format), as the error it reports."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return GatewayError(
            status, body.decode(errors="replace")[:500] or "The model server failed."
        )
    return GatewayError(
        status,
        str(error.get("message", "")),
        str(error.get("type") or "invalid_request_error"),
        error.get("param"),
        error.get("code"),
    )
