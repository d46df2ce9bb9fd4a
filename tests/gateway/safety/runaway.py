"""Regexes on which a backtracking engine runs away, the texts that set them off, and a bound
for work that might never end."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import pytest

# Long enough for any hang, short of pytest's patience.
HANG_S = 10.0

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Runaway:
    """A pattern on which a backtracking engine takes exponential (or high polynomial) time, a
    text of 10,000+ characters that sets it off, one that it matches, and where it first
    matches in each (None: nowhere)."""

    pattern: str
    hostile: str
    hostile_match: Span | None
    matched: str
    first_match: Span

    @property
    def texts(self) -> list[tuple[str, Span | None]]:
        return [(self.hostile, self.hostile_match), (self.matched, self.first_match)]


RUNAWAY = "a" * 10_000 + "!"
BACKTRACKING = [
    pytest.param(case, id=case.pattern)
    for case in (
        Runaway("(a+)+$", RUNAWAY, None, "!" + "a" * 10_000, (1, 10_001)),
        Runaway("(a|aa)+$", RUNAWAY, None, "!" + "a" * 10_000, (1, 10_001)),
        # `a?` matches nothing at the very end of any text
        Runaway("(a|a?)+$", RUNAWAY, (10_001, 10_001), "!" + "a" * 10_000, (1, 10_001)),
        # eleven a's for twelve, far apart (Python: some 5 s at 1,000 apart, 17 s at 2,000)
        Runaway("(.*a){12}", ("x" * 3_000 + "a") * 11, None, ("x" * 3_000 + "a") * 12, (0, 36_012)),
        Runaway("^(([a-z])+.)+[A-Z]([a-z])+$", RUNAWAY, None, "a" * 10_000 + "Bc", (0, 10_002)),
        Runaway(r"(\w+\s?)+$", RUNAWAY, None, "!" + "word " * 2_000 + "end", (1, 10_004)),
    )
]

Result = TypeVar("Result")


def within_hang_limit(work: Callable[[], Result]) -> Result:
    """`work()`, run in a forked child, or the test fails after HANG_S. Not in a thread: a
    backtracking regex holds the GIL, so a join with a timeout would wait for it to end."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_send_result, args=(sender, work), daemon=True)
    child.start()
    try:
        if not receiver.poll(HANG_S):
            pytest.fail(f"no result within {HANG_S:g} s")
        result, error = receiver.recv()
    finally:
        child.kill()
        child.join()
    assert error is None, error
    return result


def _send_result(sender: Connection, work: Callable[[], Any]) -> None:
    try:
        sender.send((work(), None))
    except Exception as error:  # the parent fails the test with it
        sender.send((None, repr(error)))
