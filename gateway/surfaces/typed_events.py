"""Typed SSE, as the Responses API and Anthropic's Messages frame streams: an `event:` line
naming the type, then a `data:` line; and `EventGuard`, the output guard's frame for them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic

import orjson

from gateway.safety.text_guard import TextGuard, TextKey

EVENT_END = b"\n\n"
_EVENT_LINE = b"event: "
_DATA_LINE = b"data: "


def typed_event(event: dict[str, Any]) -> bytes:
    """One typed SSE event: its type names the event."""
    head = _EVENT_LINE + str(event["type"]).encode() + b"\n" + _DATA_LINE
    return head + orjson.dumps(event) + EVENT_END


def event_type(event: bytes) -> bytes:
    """The type an event's `event:` line names (b"" when it has none)."""
    if not event.startswith(_EVENT_LINE):
        return b""
    return event[len(_EVENT_LINE) : event.find(b"\n")]


def event_data(event: bytes) -> bytes:
    """What the event's `data:` line carries (b"" when it has none)."""
    at = event.find(_DATA_LINE)
    return event[at + len(_DATA_LINE) :] if at >= 0 else b""


class EventGuard(ABC, Generic[TextKey]):
    """A chunk filter guarding a stream of typed SSE events one event at a time, its texts
    scanned by a `TextGuard`; once that blocks, what `on_events` returned last ends the stream.
    One request's answer; not shared between requests."""

    __slots__ = ("_guard",)

    def __init__(self, guard: TextGuard[TextKey]) -> None:
        self._guard: TextGuard[TextKey] = guard

    @property
    def ended(self) -> bool:
        """Blocked: what `on_events` returned last ends the stream."""
        return self._guard.blocked

    def on_events(self, events: bytes) -> bytes:
        """Rewrite complete SSE events; once blocked, the output ends the stream."""
        if self._guard.blocked:
            return b""
        out: list[bytes] = []
        for event in events.split(EVENT_END)[:-1]:
            out.append(self._event(event))
            if self._guard.blocked:
                break
        return b"".join(out)

    @abstractmethod
    def _event(self, event: bytes) -> bytes:
        """What replaces one event (given without its separator), separators included."""

    @abstractmethod
    def on_whole(self, body: bytes) -> bytes:
        """A non-streamed answer, its texts guarded."""
