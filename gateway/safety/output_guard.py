"""The output stage for the OpenAI chunks (chat, completions): answers scanned as they
stream, and whole answers, with the same rules.

A stream is scanned per choice, by a `TextGuard` (gateway/safety/text_guard.py) keyed by the
choice index: a term or a card number split across chunks is caught, and what is held back is
at most one detector window (usually the last word).

Events keep their framing: each upstream event leaves as one event, with its text replaced by
what is released; a block ends the stream with a `content_filter` chunk and `[DONE]`.

Cost: token chunks are recognised and edited as bytes (see token_events), and the token chunks
of one choice that arrive together are scanned as one text. Other events are parsed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from gateway.safety.masking import MaskVault
from gateway.safety.rules import RuleSet
from gateway.safety.text_guard import TextGuard
from gateway.safety.token_events import TokenRun, literal_text, token_event

if TYPE_CHECKING:
    from gateway.safety.runtime import PolicyRuntime

CONTENT_FILTER = "content_filter"
_EVENT_END = b"\n\n"
_DONE = b"data: [DONE]"
_DATA_OBJECT = b"data: {"
_HEAD_FIELDS = ("id", "object", "created", "model")


class OutputGuard:
    """One request's answer; not shared between requests."""

    def __init__(self, rules: RuleSet, vault: MaskVault, runtime: PolicyRuntime) -> None:
        self._text: TextGuard[int] = TextGuard(rules, vault, runtime)  # by choice index
        self._first_event = b""  # its id, object, created and model head the chunks we add
        self._chat = True

    @property
    def blocked(self) -> bool:
        return self._text.blocked

    @property
    def ended(self) -> bool:
        """Blocked: what `on_events` returned last ends the stream."""
        return self._text.blocked

    def on_events(self, events: bytes) -> bytes:
        """Rewrite complete SSE events; once blocked, the output ends the stream."""
        if self.blocked:
            return b""
        match = token_event(events, 0)
        if match is not None and match.end() == len(events):  # a paced stream's every read
            return self._release_one(events, match)
        out: list[bytes] = []
        run: TokenRun | None = None
        at = 0
        while at < len(events) and not self.blocked:
            match = token_event(events, at)
            if match is not None:
                if run is not None and run.index == int(match[1]):
                    run.add(match)
                else:
                    if run is not None:
                        out.append(self._release_run(run, events))
                    run = TokenRun(at, match)
                at = match.end()
                continue
            if run is not None:
                out.append(self._release_run(run, events))
                run = None
                if self.blocked:
                    break
            end = events.find(_EVENT_END, at)
            if end < 0:  # not a complete event: passed on as it is
                out.append(events[at:])
                break
            out.append(self._other_event(events[at:end]))
            at = end + 2
        if run is not None and not self.blocked:
            out.append(self._release_run(run, events))
        if self.blocked:
            out.append(self._ending())
        return b"".join(out)

    def _release_one(self, event: bytes, match: re.Match[bytes]) -> bytes:
        """`_release_run` for a read of a single token event, without the run's bookkeeping."""
        if not self._first_event:
            self._first_event = event[: event.index(_EVENT_END)]
            self._chat = match[2] is not None
        group = 2 if match[2] is not None else 3
        text = literal_text(match[group])
        released, blocked = self._text.feed(int(match[1]), text)
        if blocked:
            return self._blocked_event(event, released) + self._ending()
        if released == text:
            return event
        start, end = match.span(group)
        return event[:start] + orjson.dumps(released) + event[end:]

    def _ending(self) -> bytes:
        """After a block: the closing chunk and [DONE]."""
        return self._closing_chunk() + _DONE + _EVENT_END

    def _blocked_event(self, event: bytes, released: str) -> bytes:
        """The token event a block falls in, carrying the safe text (see `_block`)."""
        chunk = orjson.loads(event[6 : event.index(_EVENT_END)])
        self._block(chunk["choices"], 0, released)
        return b"data: " + orjson.dumps(chunk) + _EVENT_END

    def on_whole(self, body: bytes) -> bytes:
        """A non-streamed answer: a blocked choice keeps its text up to the match and gets
        `finish_reason: content_filter`; the other choices are rewritten independently."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        choices = document.get("choices") if isinstance(document, dict) else None
        if not choices:
            return body
        changed = False
        for position, choice in enumerate(choices):
            text = _choice_text(choice)
            if not text:
                continue
            released, blocked = self._text.feed(position, text, final=True)
            if blocked:
                choice["finish_reason"] = CONTENT_FILTER
            if blocked or released != text:
                _set_choice_text(choice, released)
                changed = True
        return orjson.dumps(document) if changed else body

    def _release_run(self, run: TokenRun, events: bytes) -> bytes:
        """Scan the run's text at once, and hand each event its part of what is released."""
        if not self._first_event:
            self._first_event = run.first_event(events)
            self._chat = run.chat
        prior = self._text.held(run.index)
        held = len(prior)
        text, ends = run.texts(events)
        if not (text or held):
            return events[run.start : run.end]
        released, blocked = self._text.feed(run.index, text)
        if blocked:  # the run arrived at once: its first event carries the safe text
            return self._blocked_event(events[run.start :], released)
        if (prior + text).startswith(released):
            return run.released(events, ends, held, released)
        return run.rewritten(events, released)

    def _other_event(self, event: bytes) -> bytes:
        """Any event but a token chunk, with its separator: parsed if it is a JSON object."""
        if event.startswith(_DATA_OBJECT):
            if not self._first_event:
                self._first_event = event
            chunk = orjson.loads(event[6:])
            if self._process_chunk(chunk):
                event = b"data: " + orjson.dumps(chunk)
        elif event == _DONE:
            flushed = self._flush()
            if self.blocked:
                return flushed
            event = flushed + event
        return event + _EVENT_END

    def _process_chunk(self, chunk: dict[str, Any]) -> bool:
        """Rewrite one parsed chunk in place; True when it changed."""
        choices = chunk.get("choices")
        if not choices:
            return False
        self._chat = "delta" in choices[0]
        changed = False
        for position, choice in enumerate(choices):
            text = _choice_text(choice) or ""
            finished = choice.get("finish_reason") is not None
            released, blocked = self._text.feed(choice.get("index", 0), text, finished)
            if blocked:
                self._block(choices, position, released)
                return True
            if released != text:
                _set_choice_text(choice, released)
                changed = True
        return changed

    def _block(self, choices: list[dict[str, Any]], position: int, released: str) -> None:
        """The blocked choice keeps its safe text; the choices after it must not get through
        raw; the closing chunk carries the finish reason."""
        choice = choices[position]
        _set_choice_text(choice, released)
        choice["finish_reason"] = None
        del choices[position + 1 :]

    def _flush(self) -> bytes:
        """At [DONE]: an event with what choices that never finished still hold (or b"")."""
        choices = [
            self._choice(index, released, None) for index, released in self._text.flush().items()
        ]
        if not choices:
            return b""
        return b"data: " + orjson.dumps({**self._head(), "choices": choices}) + _EVENT_END

    def _closing_chunk(self) -> bytes:
        choices = [self._choice(index, "", CONTENT_FILTER) for index in self._text.unfinished()]
        return b"data: " + orjson.dumps({**self._head(), "choices": choices}) + _EVENT_END

    def _head(self) -> dict[str, Any]:
        first = orjson.loads(self._first_event[6:]) if self._first_event else {}
        return {name: first[name] for name in _HEAD_FIELDS if name in first}

    def _choice(self, index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
        if self._chat:
            delta = {"content": text} if text else {}
            return {
                "index": index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        return {
            "index": index,
            "text": text,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }


def _choice_text(choice: dict[str, Any]) -> str | None:
    """The text of a chat delta or message, or of a completion choice."""
    holder = choice.get("delta") or choice.get("message")
    text = holder.get("content") if holder is not None else choice.get("text")
    return text if isinstance(text, str) else None


def _set_choice_text(choice: dict[str, Any], text: str) -> None:
    holder = choice.get("delta")
    if holder is None:
        holder = choice.get("message")
    if holder is not None:
        holder["content"] = text
    else:
        choice["text"] = text
