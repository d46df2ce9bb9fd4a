"""Output rules on texts that arrive in pieces, one text per index, whatever the API's shapes.

Each piece of an index's text joins what was held back; everything before the point where a
match could still be growing (`RuleSet.hold_from`) is final: its matches are acted on and it is
released, while the rest waits for the next piece or the end of the text. So a term or a card
number split across pieces is caught, and what is held back is at most one detector window
(usually the last word). A few characters of already released raw text are kept as context,
for word boundaries and look-behinds at the seam.

An index is whatever tells the texts of one answer apart: a choice index (chat, completions),
an (output_index, content_index) pair (the Responses API). The surfaces' filters read and write
their own events; this module only sees text (gateway/safety/output_guard.py for the OpenAI
chunks, gateway/surfaces/responses_guard.py for Responses events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from gateway.safety.masking import MaskVault
from gateway.safety.policy import Action
from gateway.safety.rules import Hit, RuleSet, first_block, redaction, rewrite

if TYPE_CHECKING:
    from gateway.safety.runtime import PolicyRuntime

OUTPUT = "output"
_CONTEXT_CHARS = 16

# A choice index, or a pair such as (output_index, content_index).
TextKey = TypeVar("TextKey", int, tuple[int, int])


class _HeldText:
    __slots__ = ("context", "finished", "held")

    def __init__(self) -> None:
        self.held = ""  # received, not yet released
        self.context = ""  # the raw text released just before `held`
        self.finished = False


class TextGuard(Generic[TextKey]):
    """The texts of one request's answer; not shared between requests."""

    __slots__ = ("_rules", "_runtime", "_texts", "_vault", "blocked")

    def __init__(self, rules: RuleSet, vault: MaskVault, runtime: PolicyRuntime) -> None:
        self._rules = rules
        self._vault = vault
        self._runtime = runtime
        self._texts: dict[TextKey, _HeldText] = {}
        self.blocked = False  # a block rule matched: what was released last ends the answer

    def feed(self, index: TextKey, text: str, final: bool = False) -> tuple[str, bool]:
        """Add `text` to the index's text (`final`: its last piece); return the text released
        now and whether a block rule matched (then the released text is what came before the
        match, and nothing more of the answer may go out). An index is known from its first
        feed on, even an empty one."""
        state = self._texts.get(index)
        if state is None:
            state = self._texts[index] = _HeldText()
        if not (text or final or state.held):
            return "", False
        released, block = self._scan(state, text, final)
        if block is not None:
            self.blocked = True
            return released, True
        if final:
            state.finished = True
        return released, False

    def held(self, index: TextKey) -> str:
        """What the index holds back so far ("" for an index never fed)."""
        state = self._texts.get(index)
        return state.held if state is not None else ""

    def flush(self) -> dict[TextKey, str]:
        """At the end of the answer: what the unfinished indexes still hold, scanned as final,
        in index order (indexes that hold nothing are left out). A block stops it: the blocked
        index's safe text is the last entry, and `blocked` is set. The indexes stay unfinished
        (`unfinished` still lists them)."""
        flushed: dict[TextKey, str] = {}
        for index in self.unfinished():
            state = self._texts[index]
            if not state.held:
                continue
            released, block = self._scan(state, "", final=True)
            flushed[index] = released
            if block is not None:
                self.blocked = True
                break
        return flushed

    def unfinished(self) -> list[TextKey]:
        """The indexes fed so far whose final piece has not come, in index order."""
        return sorted(index for index, state in self._texts.items() if not state.finished)

    def _scan(self, state: _HeldText, new: str, final: bool) -> tuple[str, Hit | None]:
        """Add `new` to the text; return the text released now and the blocking hit if any."""
        context = state.context
        text = context + state.held + new
        base = len(context)
        rules = self._rules
        end = len(text) if final else rules.hold_from(text, base)
        hits = rules.hits(text, base) if rules else None
        if hits:
            hits = [hit for hit in hits if hit.start < end]
        if hits:
            block = first_block(hits)
            if block is not None:
                return self._blocked_text(text, base, hits, block), block
            for hit in hits:
                end = max(end, hit.end)
                rule = hit.rule
                self._runtime.record(rule.name, rule.detector_name, OUTPUT, rule.action)
            released = rewrite(text, base, end, hits, redaction)
        else:
            released = text[base:end]
        state.held = text[end:]
        state.context = text[end - _CONTEXT_CHARS : end] if end > _CONTEXT_CHARS else text[:end]
        return self._vault.restore(released), None

    def _blocked_text(self, text: str, base: int, hits: list[Hit], block: Hit) -> str:
        """The safe text before the blocking match; a rewrite straddling its start is cut."""
        stop = block.start
        for hit in hits:
            if hit.start < stop < hit.end:
                stop = hit.start
        rule = block.rule
        self._runtime.record(rule.name, rule.detector_name, OUTPUT, Action.BLOCK)
        return self._vault.restore(rewrite(text, base, stop, hits, redaction))
