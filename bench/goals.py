"""The targets the gateway must meet, judged against the peers measured in the same run.

Comparing within one run (same machine, same load, same moment) is what makes the ratios
meaningful on a small shared machine whose absolute speed drifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the GPU benchmark uses Goal where the CPU harness's imports are missing
    from bench.phases import BenchResults

ADDED_LATENCY_FRACTION = 1 / 15
THROUGHPUT_FACTOR = 20
STREAM_CHUNKS_FACTOR = 15
TTFT_MARGIN_MS = 3.0
RSS_GROWTH_LIMIT_PCT = 10.0


@dataclass(frozen=True)
class Goal:
    """One target: what it asks, what was observed, and whether it was met."""

    name: str
    observed: str
    passed: bool

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.observed}"


def added_median_ms(results: BenchResults, path: str) -> float:
    return results.latency[path].median_ms - results.latency["direct"].median_ms


def added_p99_ms(results: BenchResults, path: str) -> float:
    return results.latency[path].p99_ms - results.latency["direct"].p99_ms


def evaluate(results: BenchResults) -> list[Goal]:
    ours_added = added_median_ms(results, "gateway")
    peer_added = added_median_ms(results, "litellm")
    ours_rps = results.throughput["gateway"].rps
    peer_rps = results.throughput["litellm"].rps
    relay, paced = results.relay_streams, results.paced_streams
    ours_chunks = relay.by_path["gateway"].chunks_per_s
    peer_chunks = relay.by_path["litellm"].chunks_per_s
    ours_ttft = paced.by_path["gateway"].ttft_median_ms
    direct_ttft = paced.by_path["direct"].ttft_median_ms
    gateway_errors = (
        results.latency["gateway"].errors
        + results.throughput["gateway"].errors
        + sum(phase.by_path["gateway"].incomplete for phase in results.stream_phases)
        + results.long_run_errors
    )
    return [
        Goal(
            "added median latency at c=1 <= 1/15 of LiteLLM's",
            f"{ours_added:.3f} ms vs {peer_added:.3f} ms "
            f"(limit {peer_added * ADDED_LATENCY_FRACTION:.3f} ms)",
            ours_added <= peer_added * ADDED_LATENCY_FRACTION,
        ),
        Goal(
            f"requests/s at c={results.throughput['gateway'].concurrency} >= 20x LiteLLM's",
            f"{ours_rps:,.0f} vs {peer_rps:,.0f} ({_ratio(ours_rps, peer_rps)})",
            ours_rps >= peer_rps * THROUGHPUT_FACTOR,
        ),
        Goal(
            f"stream chunks/s, {relay.label}, >= 15x LiteLLM's",
            f"{ours_chunks:,.0f} vs {peer_chunks:,.0f} ({_ratio(ours_chunks, peer_chunks)})",
            ours_chunks >= peer_chunks * STREAM_CHUNKS_FACTOR,
        ),
        Goal(
            f"median TTFT, streams {paced.label}, <= direct + 3 ms",
            f"{ours_ttft:.2f} ms vs direct {direct_ttft:.2f} ms "
            f"(added {paced.added_ttft_median_ms('gateway'):+.2f} ms; p99 "
            f"{paced.by_path['gateway'].ttft_p99_ms:.2f} vs "
            f"{paced.by_path['direct'].ttft_p99_ms:.2f} ms)",
            ours_ttft <= direct_ttft + TTFT_MARGIN_MS,
        ),
        Goal(
            f"gateway RSS growth < 10% over {results.long_run[-1].requests:,} requests",
            f"{results.rss_growth_pct:+.1f}% ({results.long_run[0].rss_kib:,} -> "
            f"{results.long_run[-1].rss_kib:,} KiB)",
            results.rss_growth_pct < RSS_GROWTH_LIMIT_PCT,
        ),
        Goal(
            "no failed requests or incomplete streams through the gateway",
            f"{gateway_errors} failed",
            gateway_errors == 0,
        ),
    ]


def _ratio(ours: float, peer: float) -> str:
    return f"{ours / peer:.1f}x" if peer else "peer at 0"
