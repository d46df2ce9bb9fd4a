"""The output guard on Anthropic Messages answers: text deltas scanned as they stream, and
whole answers rewritten, with the same rules (a `TextGuard`, gateway/safety/text_guard.py,
keyed by content block index).

A stream's text is `content_block_delta` events whose delta is a `text_delta`: each leaves as
one event carrying the text released now (sometimes "" while a possible match is held back).
What a block still holds when its `content_block_stop` comes goes out first, as one more
text_delta. A block ends the stream as Anthropic ends a refused generation: the delta the
match falls in carries the safe text before it, then `content_block_stop`, a `message_delta`
with `stop_reason: "refusal"` (its usage: the deltas relayed, about one token each) and
`message_stop`; the relay then stops (`ended`) and closes the upstream, so vLLM stops
generating. A whole answer keeps its text up to the match, loses the blocks after it, and gets
`stop_reason: "refusal"`.

Tool use (`input_json_delta`, `tool_use` blocks) is the model's call to the client's code,
which parses it as JSON: it is never rewritten. Events other than text deltas and block stops
pass as the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.safety.text_guard import TextGuard
from gateway.surfaces.typed_events import EVENT_END, EventGuard, event_data, event_type, typed_event

REFUSAL = "refusal"  # the SDK's StopReason for a generation the model refused
_TEXT_DELTA = "text_delta"


class MessagesGuard(EventGuard[int]):
    """One request's answer; not shared between requests."""

    __slots__ = ("_deltas",)

    def __init__(self, guard: TextGuard[int]) -> None:
        super().__init__(guard)
        self._deltas = 0  # content_block_delta events relayed

    def on_whole(self, body: bytes) -> bytes:
        """A non-streamed message: its text blocks guarded; a block cuts it there."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        content = document.get("content") if isinstance(document, dict) else None
        if not isinstance(content, list):
            return body
        changed = False
        for index, block in enumerate(content):
            if not _is_text(block):
                continue
            released, blocked = self._guard.feed(index, block["text"], final=True)
            if released != block["text"]:
                block["text"] = released
                changed = True
            if blocked:
                del content[index + 1 :]
                document["stop_reason"] = REFUSAL
                document["stop_sequence"] = None
                return orjson.dumps(document)
        return orjson.dumps(document) if changed else body

    def _event(self, event: bytes) -> bytes:
        """One event, with its separator: what replaces it (itself, rewritten, or more)."""
        kind = event_type(event)
        if kind == b"content_block_delta":
            self._deltas += 1
            data = orjson.loads(event_data(event))
            delta = data.get("delta")
            if not (isinstance(delta, dict) and delta.get("type") == _TEXT_DELTA):
                return event + EVENT_END  # tool input, thinking: as they are
            index, text = data.get("index", 0), delta.get("text") or ""
            released, blocked = self._guard.feed(index, text)
            if released == text:
                out = event + EVENT_END
            else:
                delta["text"] = released
                out = typed_event(data)
            return out + self._ending(index) if blocked else out
        if kind == b"content_block_stop":
            index = orjson.loads(event_data(event)).get("index", 0)
            rest, blocked = self._guard.feed(index, "", final=True)
            added = typed_event(_text_delta(index, rest)) if rest else b""
            return added + (self._ending(index) if blocked else event + EVENT_END)
        return event + EVENT_END

    def _ending(self, index: int) -> bytes:
        """After a block: the blocked block's stop, a refusal and the message's end."""
        return b"".join(
            typed_event(event)
            for event in (
                {"type": "content_block_stop", "index": index},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": REFUSAL, "stop_sequence": None},
                    "usage": {"output_tokens": self._deltas},
                },
                {"type": "message_stop"},
            )
        )


def _is_text(block: Any) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _text_delta(index: int, text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": _TEXT_DELTA, "text": text},
    }
