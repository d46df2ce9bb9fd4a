"""The Responses API's state, kept by the gateway: what a request with `store`,
`previous_response_id` or `background` becomes, and the filter that stores its answer.

`ResponseKeeper.prepare` runs as a request stage. It continues a conversation itself (the
stored response's input and output, then the new input) rather than letting vLLM look up
`previous_response_id` in its own per-process memory; it sends vLLM `store: false` and a
gateway-minted id as vLLM's `request_id` (so the answer carries the id the gateway stores it
under), and gives the request a `KeptResponse`.

`KeptResponse` is a chunk filter that holds back the answer's end: the whole body, or the
stream from its terminal event (`response.completed`, `.incomplete`, `.failed`) on. The relay
awaits `release()` once vLLM's answer has ended, which stores the response and hands the held
bytes back to send: a client that has seen a response end can continue from it at once, on
any instance. It also puts back what the gateway took out of the request
(`previous_response_id`, `background`) in the response objects the client sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from gateway.core.asgi import STREAM_HEADERS, Headers, Send
from gateway.core.errors import BadRequest, GatewayError, NotFoundError, StoreUnavailable
from gateway.core.request import InferenceRequest
from gateway.responses.store import ResponseStore, StoredResponse, new_response_id
from gateway.surfaces.responses import Responses, find_terminal
from gateway.surfaces.typed_events import EVENT_END, event_data, event_type

logger = logging.getLogger("gateway.responses")
HEARTBEAT_S = 5.0  # a background response's runner says it is alive this often
CANCEL_POLL_S = 1.0  # and looks this often whether it was cancelled
STALE_S = 6 * HEARTBEAT_S  # silent this long: its runner is gone (the process died)
STREAM_POLL_S = 0.1  # a stored stream's reader looks for more this often
_NO_PREVIOUS = b'"previous_response_id":null'
_NOT_BACKGROUND = b'"background":false'
_USAGE = b'"usage":{'
_FAILED = b"event: response.failed\n"
# request fields a queued response object echoes, as the finished one will
_ECHOED = ("instructions", "metadata", "max_output_tokens", "temperature", "top_p", "tools")


class ResponseKeeper:
    """`store`: where responses are kept (None: nowhere, and requests that need a kept
    response are refused); `retention_s`: how long."""

    def __init__(self, store: ResponseStore | None, retention_s: float) -> None:
        self.store = store
        self.retention_s = retention_s

    async def prepare(self, request: InferenceRequest, tenant_id: str) -> KeptResponse | None:
        """Rewrite the request for vLLM; the filter that keeps its answer (None: a request
        that keeps nothing and names no id of its own goes to vLLM as it came)."""
        body = request.body
        store = body.get("store") is not False
        if not store and not {"previous_response_id", "background", "request_id"} & body.keys():
            return None
        previous_id = body.pop("previous_response_id", None)
        background = body.pop("background", None) is True
        if self.store is None and (previous_id is not None or background):
            param = "previous_response_id" if previous_id is not None else "background"
            raise BadRequest(
                f"This gateway keeps no responses (responses.store is off): '{param}' cannot "
                "be used. Send the conversation so far in 'input'.",
                param,
            )
        conversation = input_items(body["input"])
        if previous_id is not None:
            previous = await self.get(tenant_id, previous_id, "previous_response_id")
            if previous.running:
                raise BadRequest(
                    f"Response '{previous_id}' is not finished yet.", "previous_response_id"
                )
            conversation = [*previous.input_items, *previous.output_as_input(), *conversation]
        # the items themselves: the input check's rewrites (redactions) land in what is stored
        body["input"] = conversation
        response_id = new_response_id()
        body["store"] = False  # never vLLM's own store: one process's memory, every tenant's
        body["request_id"] = response_id
        if background:
            body["stream"] = True  # events to replay, and a connection to cut on cancel
        request.changed = True
        record = None
        if store and self.store is not None:
            record = StoredResponse(
                tenant_id, {"id": response_id}, conversation, time.time() + self.retention_s
            )
        return KeptResponse(self.store, record, previous_id, background)

    async def get(self, tenant_id: str, response_id: str, param: str | None) -> StoredResponse:
        """The tenant's stored response, or the 404 an unknown id gets (another tenant's
        included)."""
        record = None if self.store is None else await self.store.get(tenant_id, response_id)
        if record is None:
            raise NotFoundError(
                f"Response with id '{response_id}' not found.", "response_not_found", param
            )
        return record


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A request's input as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


class KeptResponse:
    """One request's answer on its way to the store (see the module's docstring)."""

    __slots__ = ("_held", "_rewrites", "_store", "background", "previous_id", "record", "released")
    ended = False

    def __init__(
        self,
        store: ResponseStore | None,
        record: StoredResponse | None,
        previous_id: str | None,
        background: bool,
    ) -> None:
        self._store = store
        self.record = record
        self.background = background
        self.previous_id = previous_id
        self._held = b""
        self.released = False
        rewrites = []
        if previous_id is not None:
            rewrites.append((_NO_PREVIOUS, b'"previous_response_id":' + orjson.dumps(previous_id)))
        if background:
            rewrites.append((_NOT_BACKGROUND, b'"background":true'))
        self._rewrites = tuple(rewrites)

    def _rewrite(self, data: bytes) -> bytes:
        for old, new in self._rewrites:
            data = data.replace(old, new)
        return data

    def on_events(self, events: bytes) -> bytes:
        if self._rewrites:
            events = self._rewrite(events)
        if self.record is None or (_USAGE not in events and _FAILED not in events):
            return events  # no terminal event here (they carry the usage, or failed)
        at = find_terminal(events)
        if at < 0:
            return events
        end = events.find(EVENT_END, at)
        document = orjson.loads(event_data(events[at:end]))
        if isinstance(document, dict) and isinstance(document.get("response"), dict):
            self.record.response = document["response"]
        self._held = events[at:]
        return events[:at]

    def on_whole(self, body: bytes) -> bytes:
        if self._rewrites:
            body = self._rewrite(body)
        if self.record is not None:
            document = orjson.loads(body)
            if isinstance(document, dict) and document.get("object") == "response":
                self.record.response = document
        return body

    async def release(self) -> bytes:
        """Store the response (if it is to be kept and ended); the bytes held back."""
        held, self._held = self._held, b""
        record, store = self.record, self._store
        if record is None or store is None or "status" not in record.response:
            return held
        self.released = True
        record.heartbeat_at = None
        try:
            if self.background:
                # the stream's end before the status: a reader that sees it finished has it all
                await store.append_events(record, held)
                await store.put_if_running(record)  # not over a cancellation
            else:
                await store.put(record)
        except StoreUnavailable:  # logged by the store; the client still gets its answer
            logger.warning("response %s was not stored: the store is unavailable", record.id)
        return held

    # Background responses: the record before vLLM answers, its events, its failure.

    async def queue(self, body: dict[str, Any], model: str | None) -> dict[str, Any]:
        """Store the background response as queued, before the client hears of it; the
        queued response object."""
        record, store = self.record, self._store
        assert record is not None and store is not None
        queued: dict[str, Any] = {
            "id": record.id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "queued",
            "background": True,
            "model": model if model is not None else body.get("model"),
            "output": [],
            "usage": None,
            "error": None,
            "incomplete_details": None,
            "previous_response_id": self.previous_id,
            **{name: body.get(name) for name in _ECHOED},
        }
        record.response = queued
        record.heartbeat_at = time.time()
        await store.put(record)
        return queued

    async def start(self) -> None:
        """The background run has begun: the response is in progress (unless cancelled)."""
        record, store = self.record, self._store
        assert record is not None and store is not None
        record.response = {**record.response, "status": "in_progress"}
        with contextlib.suppress(StoreUnavailable):  # it reads as queued meanwhile
            await store.put_if_running(record)

    async def append(self, events: bytes) -> None:
        assert self.record is not None and self._store is not None
        if events:
            await self._store.append_events(self.record, events)

    async def fail(self, error: GatewayError) -> None:
        """The background run ended without a response: stored as failed, with why."""
        record, store = self.record, self._store
        if self.released or record is None or store is None:
            return
        code = "server_error" if error.status >= 500 else str(error.code or error.type)
        record.response = {
            **record.response,
            "status": "failed",
            "error": {"code": code, "message": error.message},
        }
        record.heartbeat_at = None
        try:
            await store.put_if_running(record)
        except StoreUnavailable:
            logger.warning("background response %s: its failure was not stored", record.id)

    async def watch(self) -> None:
        """Returns when the background response is cancelled (or deleted); meanwhile says
        every few seconds that its runner is alive."""
        record, store = self.record, self._store
        assert record is not None and store is not None
        beat = time.monotonic()
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            try:
                stored = await store.get(record.tenant_id, record.id)
                if stored is None or not stored.running:
                    return
                if time.monotonic() - beat >= HEARTBEAT_S:
                    beat = time.monotonic()
                    stored.heartbeat_at = time.time()
                    await store.put_if_running(stored)
            except StoreUnavailable:
                continue  # keep running; the store will answer again


def presented(record: StoredResponse) -> dict[str, Any]:
    """The response object as a client sees it now: a background response whose runner has
    gone silent (its gateway process died) is failed, not in progress forever."""
    response = record.response
    stale = record.heartbeat_at is not None and time.time() - record.heartbeat_at > STALE_S
    if record.running and stale:
        message = "The gateway instance running this response stopped before it ended."
        return {
            **response,
            "status": "failed",
            "error": {"code": "server_error", "message": message},
        }
    return response


async def stream_stored(
    keeper: ResponseKeeper, record: StoredResponse, after: int, headers: Headers, send: Send
) -> None:
    """A background response's events with sequence numbers above `after`, as SSE: those
    stored, then those to come until its end."""
    assert keeper.store is not None
    store = keeper.store
    await send({"type": "http.response.start", "status": 200, "headers": headers + STREAM_HEADERS})
    offset, finished = 0, False
    try:
        while True:
            log = await store.events(record.tenant_id, record.id)
            new, offset = log[offset:], len(log)
            if new:
                await _send_events(send, _events_after(new, after))
            if finished or find_terminal(new) >= 0:
                break
            current = await store.get(record.tenant_id, record.id)
            if current is None:
                break
            if not current.running or presented(current) is not current.response:
                finished = True  # read the log once more: its end came before the status
                continue
            await asyncio.sleep(STREAM_POLL_S)
    except StoreUnavailable as error:
        await _send_events(send, Responses().stream_error(error))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_events(send: Send, events: bytes) -> None:
    if events:
        await send({"type": "http.response.body", "body": events, "more_body": True})


def _events_after(events: bytes, after: int) -> bytes:
    if after < 0:
        return events
    kept = []
    for event in events.split(EVENT_END)[:-1]:
        document = orjson.loads(event_data(event) or b"{}")
        sequence = document.get("sequence_number") if isinstance(document, dict) else None
        if event_type(event) == b"error" or (isinstance(sequence, int) and sequence > after):
            kept.append(event + EVENT_END)
    return b"".join(kept)
