"""The per-index text guard: pieces of several texts, scanned apart, released as they become
final; held text flushed at the end; a block stops everything."""

from __future__ import annotations

import random
from typing import Any

from gateway.safety.text_guard import TextGuard
from tests.gateway.safety.helpers import rule, runtime

MAILS = rule("mails", "email", "redact", "output")
APPLE = rule("fruit", "deny_terms", "block", "output", terms=["forbidden fruit"])


def text_guard(*rules: dict[str, Any]) -> TextGuard[tuple[int, int]]:
    guard: TextGuard[tuple[int, int]] | None = runtime(*rules).text_guard()
    assert guard is not None
    return guard


def fed(guard: TextGuard[tuple[int, int]], key: tuple[int, int], pieces: list[str]) -> str:
    """Every piece, the last one final: the text released in all."""
    released = [guard.feed(key, piece)[0] for piece in pieces[:-1]]
    released.append(guard.feed(key, pieces[-1], final=True)[0])
    return "".join(released)


def test_no_output_rules_and_nothing_masked_need_no_text_guard() -> None:
    assert runtime(rule("mask-mail", "email", "mask", "input")).text_guard() is None


def test_a_split_address_is_redacted_wherever_it_is_cut() -> None:
    text = "write to bob.smith@example.com today"
    for cut in range(1, len(text)):
        assert fed(text_guard(MAILS), (0, 0), [text[:cut], text[cut:]]) == (
            "write to [REDACTED:EMAIL] today"
        ), cut


def test_random_pieces_give_what_the_whole_text_gives() -> None:
    text = "a@b.com, then c@d.org and e@f.net; done."
    whole = text_guard(MAILS).feed((0, 0), text, final=True)[0]
    rng = random.Random(3)
    for _ in range(100):
        cuts = sorted(rng.sample(range(1, len(text)), 6))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert fed(text_guard(MAILS), (0, 0), pieces) == whole


def test_indexes_are_scanned_apart() -> None:
    guard = text_guard(MAILS)
    assert guard.feed((0, 0), "mail a@") == ("mail ", False)  # "a@" could still grow
    assert guard.feed((1, 0), "x@") == ("", False)
    assert guard.feed((0, 0), "b.com ok", final=True) == ("[REDACTED:EMAIL] ok", False)
    assert guard.unfinished() == [(1, 0)]
    assert guard.held((1, 0)) == "x@"
    assert guard.flush() == {(1, 0): "x@"}
    assert guard.unfinished() == [(1, 0)]  # flushed, but its end never came


def test_flush_leaves_out_what_holds_nothing_and_orders_by_index() -> None:
    guard = text_guard(MAILS)
    guard.feed((2, 0), "last a@")
    guard.feed((0, 1), "first b@")
    guard.feed((0, 0), "")  # known, holds nothing
    assert list(guard.flush()) == [(0, 1), (2, 0)]
    assert guard.held((5, 5)) == ""


def test_a_block_keeps_the_safe_text_and_sets_blocked() -> None:
    guard = text_guard(APPLE)
    assert guard.feed((0, 0), "Sure. The forbidden") == ("Sure. The ", False)
    assert guard.feed((0, 0), " fruit is") == ("", True)
    assert guard.blocked


def test_a_block_found_by_flush_stops_it() -> None:
    guard = text_guard(APPLE)
    assert guard.feed((0, 0), "a forbidden fruit") == ("a ", False)  # "fruit" might go on
    guard.feed((1, 0), "b forbidden fruit")
    assert guard.flush() == {(0, 0): ""}
    assert guard.blocked


def test_integer_indexes_work_as_choice_indexes() -> None:
    guard: TextGuard[int] | None = runtime(MAILS).text_guard()
    assert guard is not None
    assert guard.feed(1, "to a@b.com", final=True) == ("to [REDACTED:EMAIL]", False)
    assert guard.unfinished() == []
