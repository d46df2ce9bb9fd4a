"""What every detector is: a regex that finds candidates, an optional check that confirms them,
and what a stream scanner must know to catch a match split across chunks.

Speed (the input budget is 50 us per KB with every built-in detector on) shapes the fields:
- each pattern starts with a literal or an ASCII character class, so the regex engine skips
  to candidate positions in C; "must not follow a word character" checks, which would defeat
  that when written as a leading look-behind, are `not_after` and run on candidates only;
- a detector with several unrelated shapes (API key formats, jailbreak phrasings) has one
  `Scan` per shape, each behind a substring test and starting with one literal word, instead
  of one alternation that the engine would try at nearly every position;
- numbers written with separators (phone numbers, cards, SSNs, IPv4 addresses) are looked for
  inside the numeric runs of the text only, which one shared scan finds;
- `gate` is a cheap test shared between detectors (does the text hold a digit at all?), run
  once per text however many detectors use it;
- case-insensitive detectors set `lowercase` and match a lower-cased copy made once per text.

A stream must hold back the end of a text that a later chunk may still turn into a match
(the start of an e-mail address, half a card number). `word_tail` holds the last word: enough
for matches without whitespace. `tails` are regexes, each usable with an end anchor appended,
for matches that may span whitespace: together they must accept every proper prefix of such a
match, and every match that could still grow; a tail's gate skips it when the held text cannot
hold its start. `tails=None` holds the whole `max_span`, for patterns that cannot be
characterised so (an operator's regex).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.safety.operator_regex import OperatorRegex

# (text, start, end) of a candidate -> (start, end) of the confirmed match, or None to reject
# it; the match may begin before the candidate (an e-mail address found at its "@").
Confirm = Callable[[str, int, int], tuple[int, int] | None]
Gate = Callable[[str], bool]

_DIGIT = re.compile(r"[0-9]")


def has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


@dataclass(frozen=True, slots=True)
class Tail:
    regex: str
    gate: Gate | None = None
    words: int | None = None  # the most words it spans: only those are searched


# The stream tail of numbers written with separators (phone numbers, cards, SSNs): shared, so
# a stream scanning for several of them searches it once.
NUMBER_TAIL = Tail(r"[0-9+(][0-9 ().-]*", has_digit)


def contains(*needles: str) -> Gate:
    """A gate passing texts that hold any of `needles` (a loop, not `any()`: gates run per
    stream chunk, where a generator costs more than the search)."""
    if len(needles) == 1:
        needle = needles[0]
        return lambda text: needle in text

    def gate(text: str) -> bool:
        for needle in needles:  # noqa: SIM110
            if needle in text:
                return True
        return False

    return gate


@dataclass(frozen=True, slots=True)
class Scan:
    """One regex of a detector, run only on texts that pass its gate; a `numeric` scan runs
    only inside the numeric runs at least `min_span` long (its matches are made of digits
    and the separators of NUMERIC_RUN, and are never shorter)."""

    pattern: re.Pattern[str] | OperatorRegex  # RE2 for an operator's regexes
    gate: Gate | None = None
    numeric: bool = False
    min_span: int = 0


# Digits and the separators numbers are written with, at least 7 characters (the shortest
# IPv4 address): the only places a numeric scan has to look.
NUMERIC_RUN = re.compile(r"[0-9+(][0-9 ().+/-]{5,}[0-9)]")
# A numeric match ends where its run does; its look-ahead reads up to 2 characters past it.
_LOOKAHEAD_CHARS = 3
Runs = list[tuple[int, int]]


def numeric_runs(text: str, pos: int = 0) -> Runs:
    return [match.span() for match in NUMERIC_RUN.finditer(text, pos)]


def lowered(text: str) -> str:
    """`text` lower-cased with every character keeping its place (offsets stay valid)."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(char if len(char.lower()) != 1 else char.lower() for char in text)


@dataclass(frozen=True, slots=True)
class Detector:
    label: str  # names what was found in redactions and placeholders: EMAIL, CARD ...
    scans: tuple[Scan, ...]
    max_span: int  # the longest match, in characters
    word_tail: bool = False
    tails: tuple[Tail, ...] | None = ()
    confirm: Confirm | None = None
    not_after: re.Pattern[str] | None = None  # a match may not start after such a character
    gate: Gate | None = None  # called with the text the pattern will see
    lowercase: bool = False

    def find(self, text: str, pos: int = 0) -> list[tuple[int, int]]:
        """(start, end) of each match that starts at or after `pos`, in order."""
        subject = lowered(text) if self.lowercase else text
        if self.gate is not None and not self.gate(subject):
            return []
        return self.matches(subject, pos)

    def matches(self, subject: str, pos: int, runs: Runs | None = None) -> list[tuple[int, int]]:
        """Like `find`, past the gate, on the text already lower-cased if `lowercase`;
        `runs`: the text's numeric runs, when the caller has found them already. Where the
        matches of several scans overlap, the earliest (then the longest) is kept."""
        found = []
        for scan in self.scans:
            if scan.gate is not None and not scan.gate(subject):
                continue
            if not scan.numeric:
                found += self._scan(scan.pattern, subject, pos, len(subject))
                continue
            if runs is None:
                runs = numeric_runs(subject, pos)
            for start, end in runs:
                if end - start >= scan.min_span:
                    limit = end + _LOOKAHEAD_CHARS
                    found += self._scan(scan.pattern, subject, max(start, pos), limit)
        if len(self.scans) == 1 or len(found) < 2:
            return found
        found.sort(key=lambda span: (span[0], -span[1]))
        kept = [found[0]]
        for start, end in found[1:]:
            if start >= kept[-1][1]:
                kept.append((start, end))
        return kept

    def _scan(
        self, pattern: re.Pattern[str] | OperatorRegex, subject: str, pos: int, endpos: int
    ) -> list[tuple[int, int]]:
        not_after, confirm = self.not_after, self.confirm
        found = []
        for match in pattern.finditer(subject, pos, endpos):
            span = match.span()
            if confirm is not None:
                confirmed = confirm(subject, *span)
                if confirmed is None:
                    continue
                span = confirmed
            start = span[0]
            if not_after is not None and start and not_after.match(subject, start - 1):
                continue
            found.append(span)
        return found
