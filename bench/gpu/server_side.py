"""Where a run's time to first token went, as the two servers saw it.

The client's TTFT through the gateway is the gateway's own work before the upstream call, plus
vLLM's time (its queue, then the prefill), plus the relay of the first chunk back. vLLM's
histograms (scraped before and after each run) give its mean TTFT and queue time for the run's
requests; the gateway's access log (one JSON line per request, appended while the run goes)
gives its TTFT (arrival to the first event sent) and its overhead (arrival to the upstream
call, minus waiting for vLLM's headers). Side by side with the client's numbers, they say
which part a difference between the paths comes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.measures import percentile

# Mean per request, from each histogram's _sum and _count (every label set added up).
VLLM_HISTOGRAMS = {
    "vllm_ttft_mean_ms": "vllm:time_to_first_token_seconds",
    "vllm_queue_mean_ms": "vllm:request_queue_time_seconds",
    "vllm_prefill_mean_ms": "vllm:request_prefill_time_seconds",
}


@dataclass(frozen=True)
class Mark:
    """The servers' state when a run starts: vLLM's histogram totals, the access log's size."""

    vllm: dict[str, tuple[float, float]]
    log_offset: int


def mark(upstream_url: str, gateway_log: Path | None) -> Mark:
    offset = gateway_log.stat().st_size if gateway_log and gateway_log.exists() else 0
    return Mark(_vllm_totals(upstream_url), offset)


def since(start: Mark, upstream_url: str, gateway_log: Path | None) -> dict[str, float | None]:
    """The run's server-side figures (None where a server did not report one)."""
    now = _vllm_totals(upstream_url)
    figures: dict[str, float | None] = {}
    for field, metric in VLLM_HISTOGRAMS.items():
        total, count = now.get(metric, (0.0, 0.0))
        total_before, count_before = start.vllm.get(metric, (0.0, 0.0))
        requests = count - count_before
        figures[field] = (total - total_before) / requests * 1e3 if requests > 0 else None
    figures.update(_gateway_figures(gateway_log, start.log_offset))
    return figures


def _vllm_totals(upstream_url: str) -> dict[str, tuple[float, float]]:
    try:
        text = httpx.get(f"{upstream_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    wanted = set(VLLM_HISTOGRAMS.values())
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, rest = line.partition("{") if "{" in line else line.partition(" ")
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            metric = name.removesuffix(suffix)
            if metric != name and metric in wanted:
                totals.setdefault(metric, [0.0, 0.0])[slot] += float(rest.rsplit(" ", 1)[-1])
    return {metric: (pair[0], pair[1]) for metric, pair in totals.items()}


def _gateway_figures(gateway_log: Path | None, offset: int) -> dict[str, float | None]:
    ttfts, overheads = [], []
    if gateway_log is not None and gateway_log.exists():
        with gateway_log.open("rb") as log:
            log.seek(offset)
            for line in log:
                if not line.startswith(b"{"):
                    continue
                entry = json.loads(line)
                if entry.get("event") != "request" or entry.get("status") != 200:
                    continue
                if entry.get("ttft_ms") is not None:
                    ttfts.append(entry["ttft_ms"])
                overheads.append(entry["overhead_ms"])
    return {
        "gateway_ttft_p50_ms": percentile(ttfts, 50) if ttfts else None,
        "gateway_overhead_p50_ms": percentile(overheads, 50) if overheads else None,
        "gateway_overhead_p99_ms": percentile(overheads, 99) if overheads else None,
    }
