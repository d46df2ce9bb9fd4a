"""The numbers each phase yields, shared by the load clients that produce them and the report."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.rss import _descendants_and_self

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class PlainResult:
    """Non-streaming requests from one load run against one path."""

    client: str
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    median_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class StreamResult:
    """Concurrent `stream: true` requests against one path.

    `chunks` counts SSE data events other than `[DONE]`; a stream is incomplete when it ends
    without `[DONE]` or with a non-200 status. ITL (inter-token latency) is the gap between
    consecutive data events after the first one with content, as `vllm bench serve` counts it.
    """

    streams: int
    incomplete: int
    chunks: int
    duration_s: float
    ttft_median_ms: float
    ttft_p99_ms: float
    itl_median_ms: float
    itl_p99_ms: float

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class RssSample:
    """Resident memory of the gateway's process tree after `requests` long-run requests."""

    requests: int
    rss_kib: int


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds used so far by `root_pid` and every live process below it.

    Read before and after a run, the difference is what the tree spent on it; a process that
    exits in between takes its share with it, which a server that keeps its workers never does.
    """
    ticks = 0
    for pid in _descendants_and_self(root_pid):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # After the parenthesised command name: utime and stime, fields 14 and 15 of proc(5).
        fields = text[text.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS_PER_S


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always a value that was really observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
