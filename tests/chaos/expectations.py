"""Check every expectation of a scenario and fail once, listing all that did not hold, so a
run shows everything that broke rather than only the first thing."""

from __future__ import annotations

from typing import Any


class Expectations:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def that(self, holds: bool, expectation: str, seen: Any = None) -> None:
        if not holds:
            self.failed.append(expectation if seen is None else f"{expectation}; seen: {seen}")

    def verify(self) -> None:
        assert not self.failed, "expectations that did not hold:\n- " + "\n- ".join(self.failed)
