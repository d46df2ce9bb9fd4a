"""What every detector is: a regex that finds candidates, an optional check that confirms them,
and what a stream scanner must know to catch a match split across chunks.

Speed (the input budget is 50 us per KB with every built-in detector on) shapes the fields:
- each pattern starts with a literal or an ASCII character class, so the regex engine skips
  to candidate positions in C; "must not follow a word character" checks, which would defeat
  that when written as a leading look-behind, are `not_after` and run on candidates only;
- a detector with several unrelated shapes (API key formats, jailbreak phrasings) has one
  `Scan` per shape, each behind a substring test, instead of one alternation that the engine
  would try at nearly every position;
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# (text, start, end) of a candidate -> end of the confirmed match, or None to reject it.
Confirm = Callable[[str, int, int], int | None]
Gate = Callable[[str], bool]

_DIGIT = re.compile(r"[0-9]")


def has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


@dataclass(frozen=True, slots=True)
class Tail:
    regex: str
    gate: Gate | None = None


# The stream tail of numbers written with separators (phone numbers, cards, SSNs): shared, so
# a stream scanning for several of them searches it once.
NUMBER_TAIL = Tail(r"[0-9+(][0-9 ().-]*", has_digit)


def contains(*needles: str) -> Gate:
    """A gate passing texts that hold any of `needles`."""

    def gate(text: str) -> bool:
        return any(needle in text for needle in needles)

    return gate


@dataclass(frozen=True, slots=True)
class Scan:
    """One regex of a detector, run only on texts that pass its gate."""

    pattern: re.Pattern[str]
    gate: Gate | None = None


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

    def find(self, text: str, pos: int = 0) -> Iterator[tuple[int, int]]:
        """(start, end) of each match that starts at or after `pos`."""
        subject = lowered(text) if self.lowercase else text
        if self.gate is not None and not self.gate(subject):
            return iter(())
        return self.matches(subject, pos)

    def matches(self, subject: str, pos: int) -> Iterator[tuple[int, int]]:
        """Like `find`, past the gate, on the text already lower-cased if `lowercase`."""
        not_after, confirm = self.not_after, self.confirm
        for scan in self.scans:
            if scan.gate is not None and not scan.gate(subject):
                continue
            for match in scan.pattern.finditer(subject, pos):
                start, end = match.span()
                if not_after is not None and start and not_after.match(subject, start - 1):
                    continue
                if confirm is not None:
                    confirmed = confirm(subject, start, end)
                    if confirmed is None:
                        continue
                    end = confirmed
                yield start, end
