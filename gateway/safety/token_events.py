"""vLLM's token chunks recognised and rewritten as raw SSE bytes, without a JSON parse.

Nearly every event of a stream is a token chunk: one choice, a piece of text, no finish
reason, nothing after the choices (no usage); null fields may follow the finish reason (vLLM
0.32 adds `stop_reason`, `token_ids`, `prompt_token_ids`). Scanning its text needs only that
text, and rewriting it needs only its JSON string literal replaced; the rest of the event,
and every event whose text does not change, stays the very same bytes. Consecutive token
chunks of one choice form a `TokenRun`, which the output guard scans as one text.

The pattern follows vLLM's own field order (the stand-in's too); an event that does not match
exactly (logprobs, tool calls, several choices, another server's order) is simply parsed.
"""

from __future__ import annotations

import bisect
import itertools
import re

import orjson

_DATA_OBJECT = b"data: {"
_CHOICES = b'"choices":[{"index":'
_STRING = rb'("[^"\\]*(?:\\.[^"\\]*)*")'
# From the choices to the end of the event. Group 1: the choice index; group 2 (chat) or 3
# (completion): the text's JSON literal.
_TOKEN_CHOICES = re.compile(
    rb'"choices":\[\{"index":([0-9]+),'
    rb'(?:"delta":\{"content":' + _STRING + rb"\}|"
    rb'"text":' + _STRING + rb")"
    rb'(?:,"logprobs":null)?,"finish_reason":null(?:,"[a-z_]+":null)*\}\]\}\n\n'
)


def token_event(events: bytes, at: int) -> re.Match[bytes] | None:
    """The token chunk starting at `at`, if the event there is one (its choices matched)."""
    if not events.startswith(_DATA_OBJECT, at):
        return None
    choices = events.find(_CHOICES, at)
    if choices < 0:
        return None
    match = _TOKEN_CHOICES.match(events, choices)
    if match is None or events.find(b"\n", at, choices) >= 0:  # the choices of a later event
        return None
    return match


def literal_text(literal: bytes) -> str:
    """A JSON string literal's text; without escapes (nearly always) no JSON decoder runs."""
    inner = literal[1:-1]
    if inner.isascii() and b"\\" not in inner:
        return inner.decode("ascii")
    text: str = orjson.loads(literal)
    return text


class TokenRun:
    """Consecutive token events of one choice within a buffer of events."""

    __slots__ = ("chat", "end", "index", "literals", "start")

    def __init__(self, start: int, match: re.Match[bytes]) -> None:
        """`start`: where the run's first event begins; `match`: its `token_event`."""
        self.index = int(match[1])
        self.chat = match[2] is not None
        self.start = start
        self.end = match.end()
        self.literals: list[tuple[int, int]] = []
        self.add(match)

    def add(self, match: re.Match[bytes]) -> None:
        self.literals.append(match.span(2 if self.chat else 3))
        self.end = match.end()

    def texts(self, events: bytes) -> tuple[str, list[int]]:
        """The run's text, and where each event's part of it ends."""
        inners = [events[start + 1 : end - 1] for start, end in self.literals]
        raw = b"".join(inners)
        if raw.isascii() and b"\\" not in raw:  # no escapes: bytes and characters align
            return raw.decode("ascii"), list(itertools.accumulate(map(len, inners)))
        texts = [orjson.loads(events[start:end]) for start, end in self.literals]
        return "".join(texts), list(itertools.accumulate(map(len, texts)))

    def released(self, events: bytes, ends: list[int], held: int, released: str) -> bytes:
        """The run's events when `released` is a prefix of (`held` characters held back before
        the run) + its text: the first event carries the held text, the events past the end of
        `released` carry their part of it or nothing; every other event is unchanged."""
        changed = {0} if held else set()
        first_cut = bisect.bisect_right(ends, len(released) - held)
        changed.update(range(first_cut, len(ends)))
        parts = {}
        for position in sorted(changed):
            low = 0 if position == 0 else held + ends[position - 1]
            parts[position] = released[low : held + ends[position]]
        return self.spliced(events, parts)

    def rewritten(self, events: bytes, released: str) -> bytes:
        """The run's events when its text was rewritten: they arrived together, so the last
        event carries all of `released` and the others nothing."""
        parts = dict.fromkeys(range(len(self.literals) - 1), "")
        parts[len(self.literals) - 1] = released
        return self.spliced(events, parts)

    def spliced(self, events: bytes, parts: dict[int, str]) -> bytes:
        pieces: list[bytes] = []
        cursor = self.start
        for position, text in parts.items():
            start, end = self.literals[position]
            pieces += (events[cursor:start], orjson.dumps(text))
            cursor = end
        pieces.append(events[cursor : self.end])
        return b"".join(pieces)

    def first_event(self, events: bytes) -> bytes:
        return events[self.start : events.index(b"\n\n", self.start)]
