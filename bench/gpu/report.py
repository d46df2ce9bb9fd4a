"""The GPU benchmark's results: raw JSON, a Markdown table, and the issue's targets.

Targets (issue 21, item 1), on each path's mean over the paired runs at 16, 64 and 256 streams:
through the gateway, output tokens/s >= 99% of direct, median TTFT at most 2 ms above direct's,
p99 TTFT at most 5% above direct's p99; no failed request through the gateway.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from bench.goals import Goal
from bench.gpu import timelines
from bench.gpu.clients import RunResult

THROUGHPUT_SHARE = 0.99
TTFT_ADDED_LIMIT_MS = 2.0
TTFT_P99_ADDED_SHARE = 0.05
PATH_LABELS = {"direct": "vLLM direct", "gateway": "through the gateway"}


@dataclass(frozen=True)
class PathRun:
    """One measured run: a path at one concurrency, and the CPU seconds the gateway's process
    tree spent meanwhile (on the direct path too: its idle cost)."""

    path: str
    concurrency: int
    result: RunResult
    gateway_cpu_s: float | None  # None on the direct path of a paired run
    servers: dict[str, float | None] = field(default_factory=dict)  # bench/gpu/server_side.py
    timeline: dict[str, Any] | None = None  # the gateway path's: bench/gpu/timelines.py
    # either path's TTFT split at vLLM's queue entry (timelines.split_at_queue), where vLLM
    # logged its requests
    queue_split: dict[str, Any] | None = None

    @property
    def gateway_cpu_cores(self) -> float | None:
        if self.gateway_cpu_s is None or not self.result.duration_s:
            return None
        return self.gateway_cpu_s / self.result.duration_s


def evaluate(runs: list[PathRun]) -> list[Goal]:
    """The targets, on each path's mean over its repeated runs at a concurrency."""
    goals = []
    for level in _levels(runs):
        streams = level.concurrency
        added = level.gateway.ttft_p50_ms - level.direct.ttft_p50_ms
        tail_added = level.gateway.ttft_p99_ms - level.direct.ttft_p99_ms
        share = level.throughput_share
        goals += [
            Goal(
                f"output tok/s through the gateway >= 99% of direct, {streams} streams",
                f"{level.gateway.output_tokens_per_s:,.0f} vs "
                f"{level.direct.output_tokens_per_s:,.0f} ({share:.1%})",
                share >= THROUGHPUT_SHARE,
            ),
            Goal(
                f"median TTFT added by the gateway <= 2 ms, {streams} streams",
                f"{level.gateway.ttft_p50_ms:.1f} vs {level.direct.ttft_p50_ms:.1f} ms "
                f"({added:+.1f} ms)",
                added <= TTFT_ADDED_LIMIT_MS,
            ),
            Goal(
                f"p99 TTFT added by the gateway <= 5% of direct's, {streams} streams",
                f"{level.gateway.ttft_p99_ms:.1f} vs {level.direct.ttft_p99_ms:.1f} ms "
                f"({tail_added:+.1f} ms, {tail_added / (level.direct.ttft_p99_ms or 1.0):+.1%})",
                tail_added <= TTFT_P99_ADDED_SHARE * level.direct.ttft_p99_ms,
            ),
        ]
    failed = sum(run.result.failed for run in runs if run.path == "gateway")
    goals.append(Goal("no failed request through the gateway", f"{failed} failed", failed == 0))
    return goals


def write_all(
    out_dir: Path, runs: list[PathRun], goals: list[Goal], context: dict[str, Any]
) -> list[Path]:
    """Write gpu-bench.json (every number, and `vllm bench serve`'s own summary per lane) and
    gpu-bench.md into `out_dir`; return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "gpu-bench.json", out_dir / "gpu-bench.md"
    raw = {
        **context,
        "runs": [_raw_run(run) for run in runs],
        "goals": [asdict(goal) for goal in goals],
    }
    # default=str: vLLM's summary may hold values json does not know (e.g. numpy scalars).
    json_path.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    md_path.write_text(_markdown(runs, goals, context))
    return [json_path, md_path]


def _raw_run(run: PathRun) -> dict[str, Any]:
    result = asdict(run.result)  # "timings" per request: sent, TTFT, for later analysis
    return {
        "path": run.path,
        "concurrency": run.concurrency,
        **result,
        "output_tokens_per_s": run.result.output_tokens_per_s,
        "gateway_cpu_s": run.gateway_cpu_s,
        "gateway_cpu_cores": run.gateway_cpu_cores,
        "servers": run.servers,
        "timeline": run.timeline,
        "queue_split": run.queue_split,
    }


def _markdown(runs: list[PathRun], goals: list[Goal], context: dict[str, Any]) -> str:
    lines = [
        "# GPU benchmark: stock vLLM direct vs through the gateway",
        "",
        *(f"- {key}: {value}" for key, value in context.items() if not isinstance(value, dict)),
        *(
            f"- {key}: " + ", ".join(f"{name}={item}" for name, item in value.items())
            for key, value in context.items()
            if isinstance(value, dict)
        ),
        "",
        "| streams per path | path | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms "
        "| ITL p99 ms | requests | failed | gateway CPU (cores) | vLLM TTFT mean ms "
        "| vLLM queue mean ms | gateway TTFT p50 ms | gateway overhead p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        result = run.result
        cells = [
            f"{result.output_tokens_per_s:,.0f}",
            f"{result.ttft_p50_ms:.1f}",
            f"{result.ttft_p99_ms:.1f}",
            f"{result.itl_p50_ms:.2f}",
            f"{result.itl_p99_ms:.2f}",
            f"{result.requests:,}",
            f"{result.failed:,}",
            "-" if run.gateway_cpu_cores is None else f"{run.gateway_cpu_cores:.2f}",
            _server_figure(run, "vllm_ttft_mean_ms"),
            _server_figure(run, "vllm_queue_mean_ms"),
            _server_figure(run, "gateway_ttft_p50_ms"),
            _server_figure(run, "gateway_overhead_p50_ms", 2)
            + " / "
            + _server_figure(run, "gateway_overhead_p99_ms", 2),
        ]
        lines.append(f"| {run.concurrency} | {PATH_LABELS[run.path]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| streams per path | paired runs | gateway output tok/s, % of direct "
        "| TTFT p50 added ms | TTFT p99 added ms | ITL p50 added ms | ITL p99 added ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in _levels(runs):
        ours, theirs = level.gateway, level.direct
        cells = [
            f"{level.repeats}",
            f"{level.throughput_share:.1%}",
            f"{ours.ttft_p50_ms - theirs.ttft_p50_ms:+.1f}",
            f"{ours.ttft_p99_ms - theirs.ttft_p99_ms:+.1f}",
            f"{ours.itl_p50_ms - theirs.itl_p50_ms:+.2f}",
            f"{ours.itl_p99_ms - theirs.itl_p99_ms:+.2f}",
        ]
        lines.append(f"| {level.concurrency} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired runs: in each, the direct lanes and the gateway lanes run at the same time, "
        "each path with the stated number of streams (vLLM carries twice as many), so both "
        "paths meet the same server state. TTFT: to the first chunk with a choice (`vllm bench "
        "serve`) or with content (bench/streams.py); ITL: the gap between consecutive chunks "
        "of a request after that one, over every request of the run. Output tok/s: tokens "
        "generated on that path (each stream's usage; with bench/streams.py, completed streams "
        "x output tokens) over its wall time. Gateway CPU: CPU seconds of the gateway's "
        "process tree during the run over its wall time. Server-side columns "
        "(bench/gpu/server_side.py): vLLM's own mean TTFT and queue time over the run's "
        "requests, both paths together (its histograms, scraped before and after the run); "
        "the gateway's TTFT (arrival to first event sent) and overhead (its own time before "
        "the upstream call) from its access log. The comparison averages each path's figures "
        "over the paired runs.",
        "",
        *timelines.markdown(
            [(run.concurrency, run.timeline) for run in runs if run.timeline is not None]
        ),
        *timelines.frontend_markdown(
            [
                (run.concurrency, run.timeline["frontend"])
                for run in runs
                if run.timeline is not None and "frontend" in run.timeline
            ]
        ),
        *timelines.queue_markdown(
            [
                (run.concurrency, PATH_LABELS[run.path], run.queue_split)
                for run in runs
                if run.queue_split is not None
            ]
        ),
        "## Targets",
        "",
        *(f"- {goal.line()}" for goal in goals),
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PathMean:
    """One path's runs at one concurrency, each figure averaged over the runs."""

    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float

    @classmethod
    def of(cls, runs: list[PathRun]) -> PathMean:
        return cls(
            output_tokens_per_s=mean(run.result.output_tokens_per_s for run in runs),
            ttft_p50_ms=mean(run.result.ttft_p50_ms for run in runs),
            ttft_p99_ms=mean(run.result.ttft_p99_ms for run in runs),
            itl_p50_ms=mean(run.result.itl_p50_ms for run in runs),
            itl_p99_ms=mean(run.result.itl_p99_ms for run in runs),
        )


@dataclass(frozen=True)
class Level:
    """Both paths at one concurrency."""

    concurrency: int
    repeats: int
    direct: PathMean
    gateway: PathMean

    @property
    def throughput_share(self) -> float:
        theirs = self.direct.output_tokens_per_s
        return self.gateway.output_tokens_per_s / theirs if theirs else 0.0


def _levels(runs: list[PathRun]) -> list[Level]:
    """Each concurrency both paths completed runs at, in the order measured."""
    levels = []
    for concurrency in dict.fromkeys(run.concurrency for run in runs):
        direct = [run for run in runs if run.concurrency == concurrency and run.path == "direct"]
        gateway = [run for run in runs if run.concurrency == concurrency and run.path == "gateway"]
        if direct and gateway:
            repeats = min(len(direct), len(gateway))
            levels.append(Level(concurrency, repeats, PathMean.of(direct), PathMean.of(gateway)))
    return levels


def _server_figure(run: PathRun, name: str, digits: int = 1) -> str:
    value = run.servers.get(name)
    return "-" if value is None else f"{value:.{digits}f}"
