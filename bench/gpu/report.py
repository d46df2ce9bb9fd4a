"""The GPU benchmark's results: raw JSON, a Markdown table, and the issue's targets.

Targets (issue 9): through the gateway, output tokens/s >= 98% of direct at 64 and 256
streams, and median TTFT at most 5 ms above direct's; no failed request through the gateway.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.goals import Goal
from bench.gpu.clients import RunResult

THROUGHPUT_SHARE = 0.98
THROUGHPUT_TARGET_STREAMS = (64, 256)
TTFT_ADDED_LIMIT_MS = 5.0
PATH_LABELS = {"direct": "vLLM direct", "gateway": "through the gateway"}


@dataclass(frozen=True)
class PathRun:
    """One measured run: a path at one concurrency, and the CPU seconds the gateway's process
    tree spent meanwhile (on the direct path too: its idle cost)."""

    path: str
    concurrency: int
    result: RunResult
    gateway_cpu_s: float

    @property
    def gateway_cpu_cores(self) -> float:
        return self.gateway_cpu_s / self.result.duration_s if self.result.duration_s else 0.0


def evaluate(runs: list[PathRun]) -> list[Goal]:
    goals = []
    for direct, gateway in _pairs(runs):
        streams = direct.concurrency
        added = gateway.result.ttft_p50_ms - direct.result.ttft_p50_ms
        if streams in THROUGHPUT_TARGET_STREAMS:
            share = _share(gateway, direct)
            goals.append(
                Goal(
                    f"output tok/s through the gateway >= 98% of direct, {streams} streams",
                    f"{gateway.result.output_tokens_per_s:,.0f} vs "
                    f"{direct.result.output_tokens_per_s:,.0f} ({share:.1%})",
                    share >= THROUGHPUT_SHARE,
                )
            )
        goals.append(
            Goal(
                f"median TTFT added by the gateway <= 5 ms, {streams} streams",
                f"{gateway.result.ttft_p50_ms:.1f} vs {direct.result.ttft_p50_ms:.1f} ms "
                f"({added:+.1f} ms)",
                added <= TTFT_ADDED_LIMIT_MS,
            )
        )
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
    return {
        "path": run.path,
        "concurrency": run.concurrency,
        **asdict(run.result),
        "output_tokens_per_s": run.result.output_tokens_per_s,
        "gateway_cpu_s": run.gateway_cpu_s,
        "gateway_cpu_cores": run.gateway_cpu_cores,
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
        "| streams | path | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms "
        "| requests | failed | gateway CPU (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|",
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
            f"{run.gateway_cpu_cores:.2f}",
        ]
        lines.append(f"| {run.concurrency} | {PATH_LABELS[run.path]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| streams | gateway output tok/s, % of direct | TTFT p50 added ms | TTFT p99 added ms "
        "| ITL p50 added ms | ITL p99 added ms |",
        "|---|---|---|---|---|---|",
    ]
    for direct, gateway in _pairs(runs):
        ours, theirs = gateway.result, direct.result
        cells = [
            f"{_share(gateway, direct):.1%}",
            f"{ours.ttft_p50_ms - theirs.ttft_p50_ms:+.1f}",
            f"{ours.ttft_p99_ms - theirs.ttft_p99_ms:+.1f}",
            f"{ours.itl_p50_ms - theirs.itl_p50_ms:+.2f}",
            f"{ours.itl_p99_ms - theirs.itl_p99_ms:+.2f}",
        ]
        lines.append(f"| {direct.concurrency} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "TTFT: to the first chunk with a choice (`vllm bench serve`) or with content "
        "(bench/streams.py); ITL: the gap between consecutive chunks of a request after that "
        "one, over every request of the run. Output tok/s: tokens generated (each stream's "
        "usage; with bench/streams.py, completed streams x output tokens) over the run's wall "
        "time. Gateway CPU: CPU seconds of the gateway's process tree during the run over its "
        "wall time (on the direct path: its idle cost).",
        "",
        "## Targets",
        "",
        *(f"- {goal.line()}" for goal in goals),
        "",
    ]
    return "\n".join(lines)


def _pairs(runs: list[PathRun]) -> list[tuple[PathRun, PathRun]]:
    """(direct, gateway) per concurrency, in the order measured."""
    by_key = {(run.path, run.concurrency): run for run in runs}
    levels = dict.fromkeys(run.concurrency for run in runs)
    return [
        (by_key["direct", level], by_key["gateway", level])
        for level in levels
        if ("direct", level) in by_key and ("gateway", level) in by_key
    ]


def _share(gateway: PathRun, direct: PathRun) -> float:
    theirs = direct.result.output_tokens_per_s
    return gateway.result.output_tokens_per_s / theirs if theirs else 0.0
