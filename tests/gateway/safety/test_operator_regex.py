"""Operators' regexes on RE2: what is refused and why, the memory cap, and the places where RE2
reads a pattern otherwise than Python would."""

from __future__ import annotations

import re

import pytest

from gateway.safety.operator_regex import MAX_MEM_BYTES, compile_any_of, compile_regex


def spans(pattern: str, text: str) -> list[tuple[int, int]]:
    return [match.span() for match in compile_regex(pattern).finditer(text)]


def test_case_insensitive_regexes_fold_any_script_unless_a_group_says_otherwise() -> None:
    verdict = compile_regex(r"^\s*unsafe", case_sensitive=False)
    assert verdict.search("  UNSAFE: weapons") is not None
    assert verdict.search("safe") is None
    assert compile_regex("ÉCOLE", case_sensitive=False).search("école") is not None
    assert compile_regex("(?-i:Unsafe)", case_sensitive=False).search("unsafe") is None


def test_word_classes_are_ascii_and_unicode_classes_are_not() -> None:
    assert spans(r"\w+", "пароль abc") == [(7, 10)]
    assert spans(r"\pL+", "пароль abc") == [(0, 6), (7, 10)]


def test_an_open_minimum_repetition_is_refused_as_python_would_read_it() -> None:
    assert re.fullmatch("a{,3}", "aa")  # Python: up to three a's; RE2: the text "a{,3}"
    with pytest.raises(ValueError, match=r"write \{0,3\}"):
        compile_regex("a{,3}")
    assert spans(r"a\{,3}|[{,3}]+", "a{,3} {,3}") == [(0, 5), (6, 10)]


def test_a_pattern_over_the_memory_cap_is_refused() -> None:
    with pytest.raises(ValueError, match=f"memory cap of {MAX_MEM_BYTES >> 20} MiB"):
        compile_regex(r"\pL{400}")
    # Each compiles to some 36,000 instructions: alone they fit, together they do not.
    halves = [prefix + "".join(f"[^{char}]{{1,999}}" for char in "abcd") for prefix in "xy"]
    for half in halves:
        compile_regex(half)
    with pytest.raises(ValueError, match=r"together .* memory cap"):
        compile_any_of(halves)


def test_an_empty_match_is_found_once_as_python_finds_it() -> None:
    for pattern, text in [("(a|a?)+$", "aaa!"), ("x*", "ab"), ("b*", "abb")]:
        assert spans(pattern, text) == [match.span() for match in re.finditer(pattern, text)]
