"""The output guard on Responses API answers: text deltas scanned as they stream, the texts
repeated in the `.done` events and the final response object set to what was released, and
whole answers rewritten with the same rules.

A stream's text is `response.output_text.delta` events, one text per (output_index,
content_index), scanned by a `TextGuard` (gateway/safety/text_guard.py). The deltas of one text
that arrive together (a run, as chat's token chunks: gateway/safety/token_events.py) are
scanned as one text, and each delta leaves as one event carrying its part of the text released
now (sometimes "" while a possible match is held back); the events whose part is their own
delta leave as the same bytes.
What a text still holds when its `response.output_text.done` comes (or, failing that, the
part's or item's `.done`, or the response's end) goes out first, as one more delta event, so
that the deltas always add up to the guarded text; events after an added one are renumbered
(`sequence_number` stays consecutive). `response.output_text.done`,
`response.content_part.done`, `response.output_item.done` and the response object of
`response.completed` / `.incomplete` / `.failed` repeat the full text: they carry the guarded
text instead.

A block ends the stream the way the Responses API ends a response that stopped early: the
delta the match falls in carries the safe text before it, then a final `response.incomplete`
event whose response has `status: "incomplete"` and `incomplete_details: {"reason":
"content_filter"}` (the API's reason for output stopped by a content filter, next to
`max_output_tokens`); its `output` holds the items so far with the guarded text, the blocked
one `incomplete`. An error event would tell the client that the request failed and lose the
safe text; `response.incomplete` is a terminal event the SDKs know (the openai SDK's stream
takes its `output`, and `responses.create(stream=True)` yields it as
`ResponseIncompleteEvent`; note that its `responses.stream(...).get_final_response()` only
accepts `response.completed` and raises on any other end). The relay then stops (`ended`) and
closes the upstream, so vLLM stops generating. A whole answer keeps its text up to the match,
loses what follows it, and gets the same status and incomplete_details.

Only output text is guarded. Function-call arguments (`response.function_call_arguments.delta`
/ `.done`, `function_call` items) are not text deltas: they are the model's call to the
client's own code, which parses them as JSON, so they are never rewritten. Events the guard has
nothing to do with pass as the same bytes, unless an added event made them need a new number.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson

from gateway.safety.text_guard import TextGuard
from gateway.surfaces.typed_events import EVENT_END, EventGuard, event_data, event_type, typed_event

TERMINAL_TYPES = ("response.completed", "response.incomplete", "response.failed")
_LIFECYCLE_TYPES = ("response.created", "response.queued", "response.in_progress")
_TEXT_DELTA = "response.output_text.delta"
_TEXT_PART = "output_text"
_CONTENT_FILTER = "content_filter"
_ITEM_EVENTS = (
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
)
# the events the guard reads one by one (text deltas come in runs); the others are not even
# parsed (unless renumbered)
_GUARDED_TYPES = frozenset(
    kind.encode() for kind in (*_LIFECYCLE_TYPES, *TERMINAL_TYPES, *_ITEM_EVENTS)
)
_TEXT_DELTA_TYPE = _TEXT_DELTA.encode()

# (output_index, content_index): one text of the answer
PartKey = tuple[int, int]
GuardedText = Callable[[PartKey, str], tuple[str, bool]]


def guard_output(response: dict[str, Any], guarded: GuardedText) -> tuple[bool, bool]:
    """Set the response's output texts to `guarded`'s; (changed, blocked). A block keeps the
    text before the match, drops everything after it and makes the response incomplete."""
    output = response.get("output")
    if not isinstance(output, list):
        return False, False
    changed = False
    for output_index, item in enumerate(output):
        item_changed, blocked = guard_item(item, output_index, guarded)
        changed = changed or item_changed
        if blocked:
            del output[output_index + 1 :]
            mark_incomplete(response)
            return True, True
    return changed, False


def guard_item(item: Any, output_index: int, guarded: GuardedText) -> tuple[bool, bool]:
    """`guard_output` for one output item: its output_text parts; (changed, blocked)."""
    content = item.get("content") if isinstance(item, dict) else None
    if not isinstance(content, list):
        return False, False
    changed = False
    for content_index, part in enumerate(content):
        if not (
            isinstance(part, dict)
            and part.get("type") == _TEXT_PART
            and isinstance(part.get("text"), str)
        ):
            continue
        text, blocked = guarded((output_index, content_index), part["text"])
        if text != part["text"]:
            part["text"] = text
            changed = True
        if blocked:
            del content[content_index + 1 :]
            item["status"] = "incomplete"
            return True, True
    return changed, False


def _text_delta(event: bytes) -> tuple[PartKey, dict[str, Any]] | None:
    """A text delta event's text (its part key) and its data (None: the event is not one)."""
    if event_type(event) != _TEXT_DELTA_TYPE:
        return None
    try:
        data = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(data, dict) and isinstance(data.get("delta"), str)):
        return None
    return (data.get("output_index", 0), data.get("content_index", 0)), data


class _DeltaRun:
    """Consecutive delta events of one text within a batch of events."""

    __slots__ = ("deltas", "events", "key")

    def __init__(self, key: PartKey, event: bytes, data: dict[str, Any]) -> None:
        self.key = key
        self.events = [event]  # as they came, without their separators
        self.deltas = [data]  # the same, parsed

    def add(self, event: bytes, data: dict[str, Any]) -> None:
        self.events.append(event)
        self.deltas.append(data)


def mark_incomplete(response: dict[str, Any]) -> None:
    response["status"] = "incomplete"
    response["incomplete_details"] = {"reason": _CONTENT_FILTER}


class ResponsesGuard(EventGuard[PartKey]):
    """The Responses API's events and response objects (see the module's docstring)."""

    __slots__ = ("_items", "_parts", "_response", "_shift", "_texts")

    def __init__(self, guard: TextGuard[PartKey]) -> None:
        super().__init__(guard)
        self._texts: dict[PartKey, list[str]] = {}  # what each text released so far
        self._response: dict[str, Any] = {}  # the latest response object the stream carried
        self._items: dict[int, dict[str, Any]] = {}  # by output_index, as last announced
        self._parts: dict[PartKey, dict[str, Any]] = {}  # as content_part.added announced them
        self._shift = 0  # events added so far: later upstream events are renumbered by it

    def on_whole(self, body: bytes) -> bytes:
        """A non-streamed response: its output texts guarded, incomplete on a block."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(document, dict):
            return body
        changed, _ = guard_output(
            document, lambda key, text: self._guard.feed(key, text, final=True)
        )
        return orjson.dumps(document) if changed else body

    def on_events(self, events: bytes) -> bytes:
        """Rewrite complete SSE events, the consecutive deltas of a text as one run; once
        blocked, the output ends the stream."""
        if self._guard.blocked:
            return b""
        out: list[bytes] = []
        run: _DeltaRun | None = None
        for event in events.split(EVENT_END)[:-1]:
            delta = _text_delta(event)
            if delta is not None:
                if run is None:
                    run = _DeltaRun(delta[0], event, delta[1])
                    continue
                if run.key == delta[0]:
                    run.add(event, delta[1])
                    continue
            if run is not None:
                out.append(self._release_run(run))
                if self._guard.blocked:
                    break
                run = None if delta is None else _DeltaRun(delta[0], event, delta[1])
            if delta is None:
                out.append(self._event(event))
                if self._guard.blocked:
                    break
        else:  # not blocked: the last run goes out too
            if run is not None:
                out.append(self._release_run(run))
        return b"".join(out)

    def _release_run(self, run: _DeltaRun) -> bytes:
        """Scan the run's text at once and hand each delta its part of what is released: when
        that is a prefix of (what the text held before) + the run's text, each delta keeps its
        own part of it (the first one the held text too); a rewrite goes out in the run's last
        delta. A block leaves the safe text in the first delta, then the ending."""
        key, deltas = run.key, run.deltas
        if len(deltas) == 1:  # a paced stream's every read
            return self._release_one(run.events[0], key, deltas[0])
        prior = self._guard.held(key)
        texts = [data["delta"] for data in deltas]
        text = "".join(texts)
        released, blocked = self._guard.feed(key, text)
        self._texts.setdefault(key, []).append(released)
        if blocked:
            deltas[0]["delta"] = released
            return self._emitted(deltas[0], [deltas[0], self._ending()])
        if released == text and not prior and not self._shift:  # nothing held, nothing changed
            return b"".join(event + EVENT_END for event in run.events)
        if (prior + text).startswith(released):
            bounds = [len(prior) + end for end in itertools.accumulate(map(len, texts))]
            parts = [released[low:high] for low, high in itertools.pairwise([0, *bounds])]
        else:
            parts = [""] * (len(texts) - 1) + [released]
        out = []
        for event, data, part in zip(run.events, deltas, parts, strict=True):
            if part == data["delta"] and not self._shift:
                out.append(event + EVENT_END)
            else:
                data["delta"] = part
                out.append(self._emitted(data, [data]))
        return b"".join(out)

    def _release_one(self, event: bytes, key: PartKey, data: dict[str, Any]) -> bytes:
        """`_release_run` for a run of one delta."""
        delta = data["delta"]
        released, blocked = self._guard.feed(key, delta)
        self._texts.setdefault(key, []).append(released)
        data["delta"] = released
        if blocked:
            return self._emitted(data, [data, self._ending()])
        if released == delta and not self._shift:
            return event + EVENT_END
        return self._emitted(data, [data])

    def _emitted(self, data: dict[str, Any], emitted: list[dict[str, Any]]) -> bytes:
        """The events that replace the upstream event `data`, numbered from its number on
        (later upstream events are renumbered by the events added)."""
        sequence = data.get("sequence_number")
        if isinstance(sequence, int):
            for number, out in enumerate(emitted, sequence + self._shift):
                out["sequence_number"] = number
            self._shift += len(emitted) - 1
        return b"".join(typed_event(out) for out in emitted)

    def _event(self, event: bytes) -> bytes:
        """The event itself, rewritten, or more events (added deltas, the ending)."""
        kind = event_type(event)
        if kind and not self._shift and kind not in _GUARDED_TYPES:
            return event + EVENT_END  # e.g. function-call arguments, an upstream `error`
        try:
            data = orjson.loads(event_data(event))
        except orjson.JSONDecodeError:  # a comment, a keep-alive: nothing to guard
            return event + EVENT_END
        if not isinstance(data, dict):
            return event + EVENT_END
        emitted = self._handle(str(data.get("type")), data)
        if emitted is None:
            if not (self._shift and isinstance(data.get("sequence_number"), int)):
                return event + EVENT_END
            emitted = [data]
        return self._emitted(data, emitted)

    def _handle(self, kind: str, data: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The events that replace `data` (numbered by the caller); None: it goes on as is."""
        if kind in _LIFECYCLE_TYPES:
            if isinstance(data.get("response"), dict):
                self._response = data["response"]
            return None
        if kind in TERMINAL_TYPES:
            return self._terminal_event(data)
        output_index = data.get("output_index")
        if not isinstance(output_index, int):
            return None
        if kind == "response.output_item.added" and isinstance(data.get("item"), dict):
            self._items[output_index] = data["item"]
        elif kind == "response.content_part.added" and isinstance(data.get("part"), dict):
            self._parts[(output_index, data.get("content_index", 0))] = data["part"]
        elif kind == "response.output_text.done" and isinstance(data.get("text"), str):
            return self._text_done(data, (output_index, data.get("content_index", 0)), data)
        elif kind == "response.content_part.done" and isinstance(data.get("part"), dict):
            part = data["part"]
            if part.get("type") == _TEXT_PART and isinstance(part.get("text"), str):
                return self._text_done(data, (output_index, data.get("content_index", 0)), part)
        elif kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            return self._item_done(data, output_index)
        return None

    def _text_done(
        self, data: dict[str, Any], key: PartKey, holder: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """An event repeating one text in `holder["text"]`."""
        added: list[dict[str, Any]] = []
        text, blocked = self._settled(key, holder["text"], added)
        if blocked:
            return [*added, self._ending()]
        if text == holder["text"] and not added:
            return None
        holder["text"] = text
        return [*added, data]

    def _item_done(self, data: dict[str, Any], output_index: int) -> list[dict[str, Any]] | None:
        added: list[dict[str, Any]] = []
        item = data["item"]
        changed, blocked = guard_item(
            item, output_index, lambda key, text: self._settled(key, text, added)
        )
        self._items[output_index] = item
        if blocked:
            return [*added, self._ending()]
        return [*added, data] if changed or added else None

    def _terminal_event(self, data: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The response's end: texts never settled go out first, the response object carries
        the guarded texts; a block found now turns the event into `response.incomplete`."""
        response = data.get("response")
        if not isinstance(response, dict):
            return None
        self._response = response
        added: list[dict[str, Any]] = []
        for key, rest in self._guard.flush().items():
            self._texts.setdefault(key, []).append(rest)
            if rest:
                added.append(self._added_delta(key, rest))
        if self._guard.blocked:
            return [*added, self._ending()]
        changed, blocked = guard_output(response, lambda key, text: self._settled(key, text, added))
        if blocked:
            data["type"] = "response.incomplete"
        return [*added, data] if changed or added else None

    def _settled(self, key: PartKey, text: str, added: list[dict[str, Any]]) -> tuple[str, bool]:
        """The guarded text of a part that is over (`text`: the upstream's copy of it). What it
        still held goes into `added` as a delta; a text never streamed is scanned whole."""
        pieces = self._texts.get(key)
        if pieces is None:
            released, blocked = self._guard.feed(key, text, final=True)
            self._texts[key] = [released]
            return released, blocked
        rest, blocked = self._guard.feed(key, "", final=True)
        if rest:
            pieces.append(rest)
            added.append(self._added_delta(key, rest))
        return "".join(pieces), blocked

    def _added_delta(self, key: PartKey, text: str) -> dict[str, Any]:
        output_index, content_index = key
        item = self._items.get(output_index, {})
        return {
            "content_index": content_index,
            "delta": text,
            "item_id": item.get("id", ""),
            "logprobs": [],
            "output_index": output_index,
            "sequence_number": 0,  # numbered as it is sent
            "type": _TEXT_DELTA,
        }

    def _ending(self) -> dict[str, Any]:
        """After a block: the final `response.incomplete` event (see the module's docstring)."""
        response = {**self._response, "output": self._output()}
        mark_incomplete(response)
        return {"response": response, "sequence_number": 0, "type": "response.incomplete"}

    def _output(self) -> list[dict[str, Any]]:
        """The items announced so far, their texts as released; unfinished ones incomplete."""
        output = []
        for output_index in sorted(self._items):
            item = dict(self._items[output_index])
            content = list(item.get("content") or [])
            for key in sorted(key for key in self._texts if key[0] == output_index):
                text = "".join(self._texts[key])
                content_index = key[1]
                if content_index < len(content):
                    content[content_index] = {**content[content_index], "text": text}
                else:
                    part = self._parts.get(key, {"type": _TEXT_PART, "annotations": []})
                    content.append({**part, "text": text})
            if content:
                item["content"] = content
            if item.get("status") != "completed":
                item["status"] = "incomplete"
            output.append(item)
        return output
