"""Compiled rules of one direction: find their hits in a text, rewrite it, and tell a stream
how much of its end to hold back.

Hits are resolved the same way everywhere (input, whole answers, streams): sorted by start,
the longest first; a `block` hit wins over everything; `redact` and `mask` hits replace their
span unless an earlier replaced span overlaps them; `flag` hits only count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.safety.detector import Detector, Gate, lowered, numeric_runs
from gateway.safety.policy import Action

REWRITING = frozenset({Action.REDACT, Action.MASK})


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    detector_name: str
    action: Action
    detector: Detector
    roles: frozenset[str] | None = None  # chat input: the roles it looks at; None: all


@dataclass(frozen=True, slots=True)
class Hit:
    start: int
    end: int
    rule: Rule


Replacement = Callable[[Hit, str], str]


def redaction(hit: Hit, _: str) -> str:
    return f"[REDACTED:{hit.rule.detector.label}]"


class RuleSet:
    """Immutable and shared by every request of a policy."""

    def __init__(self, rules: Iterable[Rule], hold_word_up_to: int = 0) -> None:
        """`hold_word_up_to`: also hold back a last word of up to that many characters, for
        something else a stream must not split (placeholders to restore)."""
        self.rules = tuple(rules)
        detectors = [rule.detector for rule in self.rules]
        tails = dict.fromkeys(tail for d in detectors for tail in d.tails or ())
        self._tails = [(re.compile(tail.regex + r"\Z"), tail.gate, tail.words) for tail in tails]
        self._word_tail = hold_word_up_to > 0 or any(d.word_tail for d in detectors)
        self._fixed_hold = max((d.max_span for d in detectors if d.tails is None), default=0)
        self.window = max([d.max_span for d in detectors] + [hold_word_up_to])
        # Rules grouped by (gate, lower-cased text): each gate runs once per text, and a
        # closed gate skips all of its rules at once.
        groups: dict[tuple[Gate | None, bool], list[Rule]] = {}
        for rule in self.rules:
            groups.setdefault((rule.detector.gate, rule.detector.lowercase), []).append(rule)
        self._groups = [
            (gate, lower, tuple((r, any(s.numeric for s in r.detector.scans)) for r in rules))
            for (gate, lower), rules in groups.items()
        ]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def hits(self, text: str, pos: int = 0) -> list[Hit]:
        """Every rule's matches that start at or after `pos`, in resolution order."""
        lower = None
        runs = None  # the numeric runs of `text`, found once for all the detectors that look
        found = []
        for gate, lowercase, rules in self._groups:
            subject = text
            if lowercase:
                subject = lower = lower if lower is not None else lowered(text)
            # what a gate looks for lies inside the match, which starts at `pos` or later
            if gate is not None and not gate(subject[pos:] if pos else subject):
                continue
            for rule, numeric in rules:
                if numeric and runs is None and not lowercase:
                    runs = numeric_runs(text, pos)
                for start, end in rule.detector.matches(subject, pos, None if lowercase else runs):
                    # A match found at its "@" may reach back before `pos` (into a stream's
                    # released text, for a word longer than the window): keep what is left.
                    found.append(Hit(max(start, pos), end, rule))
        if len(found) > 1:
            found.sort(key=lambda hit: (hit.start, -hit.end))
        return found

    def hold_from(self, text: str, pos: int) -> int:
        """Where the part of `text[pos:]` that a later chunk could still turn into a match
        begins; everything before it is final. Never earlier than `window` from the end."""
        end = len(text)
        floor = max(pos, end - self.window)
        start = end - self._fixed_hold
        if self._word_tail:
            start = min(start, _last_word_start(text, floor))
        held = None
        for tail, gate, words in self._tails:
            if start <= floor:
                break
            if gate is not None:
                held = text[floor:] if held is None else held
                if not gate(held):
                    continue
            origin = floor if words is None else _last_words_start(text, floor, words)
            match = tail.search(text, origin)
            if match is not None:
                start = min(start, match.start())
        return max(start, floor)


def _last_word_start(text: str, floor: int) -> int:
    """Where the last word begins, at `floor` or later. Only the common whitespace counts:
    missing a rarer one only starts the search earlier, which is safe."""
    last_space = max(text.rfind(" ", floor), text.rfind("\n", floor), text.rfind("\t", floor))
    return last_space + 1 if last_space >= 0 else floor


def _last_words_start(text: str, floor: int, words: int) -> int:
    """At or before where the last `words` words begin (one more, for trailing whitespace):
    runs of spaces count once, so this never starts too late."""
    at = len(text)
    for _ in range(words + 1):
        space = max(text.rfind(" ", floor, at), text.rfind("\n", floor, at))
        if space < 0:
            return floor
        at = space
        while at > floor and text[at - 1].isspace():
            at -= 1
    return at


def first_block(hits: list[Hit]) -> Hit | None:
    return next((hit for hit in hits if hit.rule.action is Action.BLOCK), None)


def rewrite(text: str, start: int, end: int, hits: list[Hit], replacement: Replacement) -> str:
    """`text[start:end]` with every rewriting hit inside it replaced."""
    pieces = []
    at = start
    for hit in hits:
        if hit.rule.action not in REWRITING or hit.start < at or hit.end > end:
            continue
        pieces.append(text[at : hit.start])
        pieces.append(replacement(hit, text[hit.start : hit.end]))
        at = hit.end
    if not pieces:
        return text[start:end]
    pieces.append(text[at:end])
    return "".join(pieces)
