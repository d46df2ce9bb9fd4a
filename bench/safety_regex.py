"""What an operator's regex costs on hostile text: Python's backtracking engine (how deny_regex
patterns ran before) against RE2 (how they run now, see gateway.safety.operator_regex).

Run `python -m bench.safety_regex [--rounds N] [--timeout S]`: prints two tables.

1. `(a+)+$` against n a's and a "!" (the match fails, so a backtracking engine tries every way
   to split the a's): best of N rounds, wall time. Python runs in a child process, stopped
   after `--timeout` seconds; RE2 runs through the gateway's deny_regex detector.
2. RE2's own worst case, for the record: linear in the text, but a character can cost a step
   per instruction of the compiled program, so a rule written to keep many alternatives alive
   at once costs far more per character than the classic patterns do.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable

from gateway.safety import deny
from gateway.safety.policy import MAX_PATTERNS

PATTERN = "(a+)+$"
LENGTHS = (16, 20, 22, 24, 10_000)
# Times the search as the old detector ran it: the rule's patterns joined, then finditer.
_PYTHON_CHILD = """
import re, sys, time
pattern = re.compile("(?:" + sys.argv[1] + ")")
text = "a" * int(sys.argv[2]) + "!"
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    list(pattern.finditer(text))
    times.append(time.perf_counter() - start)
print(min(times))
"""


def best_of(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def python_seconds(length: int, rounds: int, timeout_s: float) -> float | None:
    """None when Python had not finished after `timeout_s`."""
    argv = [sys.executable, "-c", _PYTHON_CHILD, PATTERN, str(length), str(rounds)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(done.stdout)


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.3f}" if seconds < 1 else f"{seconds * 1000:,.0f}"


def classic_table(rounds: int, timeout_s: float) -> list[str]:
    detector = deny.deny_regex([PATTERN], window_chars=64)
    rows = [
        f'| `{PATTERN}` on n a\'s + "!" | Python `re`, ms | RE2 (deny_regex), ms |',
        "|---|---|---|",
    ]
    for length in LENGTHS:
        text = "a" * length + "!"
        old = python_seconds(length, rounds, timeout_s)
        new = best_of(rounds, lambda text=text: detector.find(text))
        old_cell = milliseconds(old) if old is not None else f"> {timeout_s:g} s (stopped)"
        rows.append(f"| {length:,} | {old_cell} | {milliseconds(new)} |")
    return rows


def worst_case_table(rounds: int) -> list[str]:
    """Rules of `a[ab]{1}c|a[ab]{2}c|...` (up to the most patterns a rule may have) on a text
    of a's: every alternative stays alive at every character."""
    text = "a" * 10_000
    rows = ["| RE2 (deny_regex) on 10,000 a's | ms |", "|---|---|"]
    for count in (1, 10, 50, 100, MAX_PATTERNS):
        detector = deny.deny_regex([f"a[ab]{{{width}}}c" for width in range(1, count + 1)], 64)
        seconds = best_of(rounds, lambda detector=detector: detector.find(text))
        rows.append(f"| {count} patterns `a[ab]{{k}}c`, k = 1..{count} | {milliseconds(seconds)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.safety_regex")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds, per Python run")
    args = parser.parse_args()
    print("\n".join(classic_table(args.rounds, args.timeout)))
    print()
    print("\n".join(worst_case_table(args.rounds)))


if __name__ == "__main__":
    main()
