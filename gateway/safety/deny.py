"""Operator deny-lists: whole words or phrases (case-insensitive), and raw regexes (on RE2,
see operator_regex).

Terms compile into one regex shaped like a trie (common prefixes factored out), so a list of
thousands costs about what a handful does: the engine follows one branch per character
instead of trying every term at every position. It matches a lower-cased copy of the text.
For phrases, the same trie with every continuation optional is the stream tail: it holds
back only the trailing words that could still become a phrase.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.safety.detector import Detector, Scan, Tail
from gateway.safety.operator_regex import compile_any_of

_WHITESPACE = re.compile(r"\s+")
_WORD_CHAR = re.compile(r"\w")
# Slack for the whitespace inside a phrase, which the pattern lets be longer than one space.
_PHRASE_SLACK = 16

_Trie = dict[str, Any]
_END = ""


def _trie(terms: list[str]) -> _Trie:
    root: _Trie = {}
    for term in terms:
        node = root
        for char in term:
            node = node.setdefault(char, {})
        node[_END] = {}
    return root


def _char(char: str) -> str:
    return r"\s+" if char == " " else re.escape(char)


def _branches(node: _Trie, partial: bool) -> str:
    """The regex of the terms below `node`; `partial` also accepts any prefix of them."""
    branches = [
        _char(char) + _continuation(child, partial)
        for char, child in sorted(node.items())
        if char != _END
    ]
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _continuation(node: _Trie, partial: bool) -> str:
    if not any(char != _END for char in node):
        return ""
    rest = _branches(node, partial)
    return f"(?:{rest})?" if partial or _END in node else rest


def _normalised(terms: list[str]) -> list[str]:
    return sorted({_WHITESPACE.sub(" ", term.strip()).lower() for term in terms} - {""})


def deny_terms(terms: list[str]) -> Detector:
    phrases = _normalised(terms)
    trie = _trie(phrases)
    most_words = max(phrase.count(" ") + 1 for phrase in phrases)
    # A phrase may still be growing over its last words; a single word is the last word.
    partial = Tail(rf"(?<!\w)(?i:{_branches(trie, partial=True)})", words=most_words)
    return Detector(
        label="TERM",
        scans=(Scan(re.compile(rf"{_branches(trie, partial=False)}(?!\w)")),),
        max_span=max(len(phrase) for phrase in phrases) + _PHRASE_SLACK,
        word_tail=most_words == 1,
        tails=(partial,) if most_words > 1 else (),
        not_after=_WORD_CHAR,
        lowercase=True,
    )


def deny_regex(patterns: list[str], window_chars: int) -> Detector:
    """An operator's regexes; on streams a match is looked for within `window_chars`."""
    return Detector(
        label="PATTERN",
        scans=(Scan(compile_any_of(patterns)),),
        max_span=window_chars,
        tails=None,
    )
