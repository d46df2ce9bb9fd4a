"""One PNG with a panel per metric, bars per path, and the gateway's RSS over the long run.

A bare `Figure` (no pyplot) renders with Agg and touches no global GUI state, so it runs headless.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from bench.phases import BenchResults

_COLORS = {"direct": "#7f7f7f", "gateway": "#2ca02c", "litellm": "#d62728"}


def save(results: BenchResults, path: Path, labels: dict[str, str]) -> None:
    names = list(results.latency)
    concurrency = results.throughput["gateway"].concurrency
    relay, paced = results.relay_streams, results.paced_streams
    panels = [
        ("median latency at c=1 (ms)", [results.latency[n].median_ms for n in names]),
        ("p99 latency at c=1 (ms)", [results.latency[n].p99_ms for n in names]),
        (f"requests/s at c={concurrency}", [results.throughput[n].rps for n in names]),
        (
            f"CPU s per 1k requests at c={concurrency}",
            [results.cpu_s_per_1k_requests(n) for n in names],
        ),
        (f"stream chunks/s, {relay.label}", [relay.by_path[n].chunks_per_s for n in names]),
        (
            f"median TTFT (ms), {relay.label}",
            [relay.by_path[n].ttft_median_ms for n in names],
        ),
        (f"median TTFT (ms), {paced.label}", [paced.by_path[n].ttft_median_ms for n in names]),
        (f"p99 TTFT (ms), {paced.label}", [paced.by_path[n].ttft_p99_ms for n in names]),
    ]
    figure = Figure(figsize=(15, 12), layout="constrained")
    axes = figure.subplots(3, 3)
    for axis, (title, values) in zip(axes.flat, panels, strict=False):
        bars = axis.bar([labels[n] for n in names], values, color=[_COLORS[n] for n in names])
        axis.bar_label(bars, fmt=_label)
        axis.set_title(title)
        axis.tick_params(axis="x", labelsize=8)
    rss_axis = axes.flat[-1]
    rss_axis.plot(
        [sample.requests for sample in results.long_run],
        [sample.rss_kib / 1024 for sample in results.long_run],
        marker="o",
        color=_COLORS["gateway"],
    )
    rss_axis.set_title(f"gateway RSS over the long run ({results.rss_growth_pct:+.1f}%)")
    rss_axis.set_xlabel("requests")
    rss_axis.set_ylabel("MiB")
    rss_axis.set_ylim(0, max(sample.rss_kib for sample in results.long_run) / 1024 * 1.15)
    figure.savefig(path, dpi=100)


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
