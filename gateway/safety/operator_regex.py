"""The regexes an operator writes into a policy (deny_regex `patterns`, a guard's
`unsafe_pattern`), compiled by RE2.

A scan runs on the event loop, so a regex that backtracks stalls every tenant: Python's engine
takes a second to find that `(a+)+$` does not match 24 a's and a "!", three or four times
longer for every two more a's. RE2 matches in time linear in the text, never backtracking, as
it has no backreferences, lookarounds, atomic groups or possessive quantifiers: a pattern
that needs them is refused when the policy is validated, with the reason. Its memory is capped too
(`MAX_MEM_BYTES`: the compiled program and the cache of its automaton), so a giant pattern is
refused rather than compiled. Linear is not free: in the worst case a scan takes a step per
instruction of the program per character, so that cap also bounds what a character can cost.

RE2's syntax is Perl's, as Python's is, with these differences an operator may trip on:
`\\w`, `\\d`, `\\s` and `\\b` are ASCII only (`\\pL`, `\\p{Greek}` for letters of any script);
`$` without `(?m)` is the very end of the text (Python's also matches before a final newline);
the end of the text is `\\z`, not `\\Z`; a flag such as `(?i)` applies to the rest of the
pattern it is written in, and no further once the patterns of a rule are joined. `{,n}`, a
repetition in Python, is literal text in RE2: it is refused, so that it cannot mean what the
operator did not write.

The built-in detectors stay on `re`: their patterns are the project's own (a deny-list's terms
are escaped into a trie whose shape is ours), several need lookarounds or backreferences, and
each unbounded repetition in them can match a given text in one way only.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Protocol

import re2

# The memory of one operator regex (RE2's default is 8 MiB). Its compiled program may take
# about two thirds: some 65,000 instructions, room for a few hundred ordinary patterns. A
# larger one is refused, and compiling stops at the cap, so a pattern that expands enormously
# (`\pL{400}`, `[^a]{1,999}` many times over) is refused quickly. The rest caches RE2's DFA;
# when that overflows RE2 falls back to its NFA, slower but still linear in the text.
MAX_MEM_BYTES = 1 << 20

# A "{,n}" outside a character class and not escaped (classes and escapes are skipped whole).
_OPEN_MIN_REPEAT = re.compile(r"\\.|\[\^?\]?(?:\[:\w+:\]|\\.|[^\]\\])*\]|(\{,[0-9]*\})")


class Span(Protocol):
    def span(self) -> tuple[int, int]: ...


class OperatorRegex:
    """A compiled RE2 regex with what the gateway uses of `re.Pattern`."""

    __slots__ = ("_regex",)

    def __init__(self, regex: re2._Regexp[str]) -> None:
        self._regex = regex

    def search(self, text: str) -> Span | None:
        return self._regex.search(text)

    def finditer(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[Span]:
        """As `re.Pattern.finditer`. The RE2 module yields an empty match twice when it is found
        ahead of where the search began (the end of "aaa!" for `(a|a?)+$`): once here."""
        previous = None
        for match in self._regex.finditer(text, pos, endpos):
            span = match.span()
            if span != previous:
                yield match
            previous = span


def _options(case_sensitive: bool) -> re2.Options:
    options = re2.Options()
    options.max_mem = MAX_MEM_BYTES
    options.case_sensitive = case_sensitive
    options.never_capture = True  # spans are all the gateway reads: no submatch bookkeeping
    options.log_errors = False  # a refused pattern is the caller's error, not a log line
    return options


_CASE_SENSITIVE = _options(case_sensitive=True)
_CASE_INSENSITIVE = _options(case_sensitive=False)


def _compiled(pattern: str, case_sensitive: bool) -> OperatorRegex:
    """RE2's regex, or ValueError with the reason (which does not quote the pattern)."""
    for match in _OPEN_MIN_REPEAT.finditer(pattern):
        if match[1] is not None:
            upper = match[1][2:-1]
            raise ValueError(
                f"RE2 reads {match[1]} as literal text, not as a repetition: "
                f"write {{0,{upper}}}, or \\{{,{upper}}} for the text"
            )
    try:
        options = _CASE_SENSITIVE if case_sensitive else _CASE_INSENSITIVE
        return OperatorRegex(re2.compile(pattern, options))
    except re2.error as error:
        reason = error.args[0].decode(errors="replace")
    if reason.startswith("pattern too large"):
        raise ValueError(f"over RE2's memory cap of {MAX_MEM_BYTES >> 20} MiB ({reason})")
    raise ValueError(
        f"RE2 cannot compile it ({reason}); operator regexes run on RE2, which matches in time "
        "linear in the text and so has no backreferences, lookarounds, atomic groups or "
        "possessive quantifiers (and writes the end of the text \\z)"
    )


def compile_regex(pattern: str, case_sensitive: bool = True) -> OperatorRegex:
    """`pattern` compiled by RE2; ValueError saying why it cannot be."""
    try:
        return _compiled(pattern, case_sensitive)
    except ValueError as error:
        raise ValueError(f"invalid regex {pattern!r}: {error}") from None


def compile_any_of(patterns: list[str]) -> OperatorRegex:
    """One regex matching where any of `patterns` does (the first listed, where two match at
    the same place); ValueError when they compile only apart, being over the memory cap."""
    try:
        return _compiled("|".join(f"(?:{pattern})" for pattern in patterns), True)
    except ValueError as error:
        raise ValueError(
            f"the regexes together are refused: {error}; split them across rules"
        ) from None
