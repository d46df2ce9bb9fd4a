"""Chunk filters: what the relay runs on an answer on its way to the client.

A filter sees whole answers (`on_whole`) and, for streams, each batch of complete SSE events
as it arrives (`on_events`, never a partial event). It returns what goes on: the bytes as they
are (the common case, and the cheap one), rewritten, or b"" to send nothing this time. A
filter that must end the stream (the output guard's block) appends its closing events and sets
`ended`; the relay then stops reading and closes the upstream. Filters run in list order.

A `HoldingFilter` may keep the answer's end back (return less than it got); once the upstream's
answer has ended, the relay awaits its `release()` and sends what it returns last.
"""

from __future__ import annotations

from typing import Protocol


class ChunkFilter(Protocol):
    @property
    def ended(self) -> bool:
        """True once the filter has ended the stream with what it last returned."""
        ...

    def on_events(self, events: bytes) -> bytes: ...

    def on_whole(self, body: bytes) -> bytes: ...


class HoldingFilter(ChunkFilter, Protocol):
    async def release(self) -> bytes:
        """The answer has ended: finish what the end was held for; the bytes to send last."""
        ...


class Rename:
    """vLLM's name for the model swapped for the one the client asked for."""

    __slots__ = ("_new", "_old")
    ended = False

    def __init__(self, old: bytes, new: bytes) -> None:
        self._old, self._new = old, new

    def on_events(self, events: bytes) -> bytes:
        return events.replace(self._old, self._new)

    on_whole = on_events
