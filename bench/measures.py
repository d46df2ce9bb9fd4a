"""The numbers each phase yields, shared by the load clients that produce them and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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
    without `[DONE]` or with a non-200 status.
    """

    streams: int
    incomplete: int
    chunks: int
    duration_s: float
    ttft_median_ms: float
    ttft_p99_ms: float

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class RssSample:
    """Resident memory of the gateway's process tree after `requests` long-run requests."""

    requests: int
    rss_kib: int


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always a value that was really observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
