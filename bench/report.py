"""Write a run's results as Markdown (for people), JSON (raw numbers) and a PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench import plot
from bench.goals import Goal, added_median_ms, added_p99_ms
from bench.phases import BenchResults

PATH_LABELS = {"direct": "upstream direct", "gateway": "our gateway", "litellm": "LiteLLM proxy"}


def write_all(
    out_dir: Path,
    results: BenchResults,
    goals: list[Goal],
    context: dict[str, object],
) -> list[Path]:
    """Write latest.{json,md,png} into `out_dir`; `context` holds command, machine, versions
    and settings. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"latest.{ext}" for ext in ("json", "md", "png"))
    json_path.write_text(json.dumps(_raw(results, goals, context), indent=2) + "\n")
    plot.save(results, png_path, PATH_LABELS)
    md_path.write_text(_markdown(results, goals, context, png_path.name))
    return [md_path, json_path, png_path]


def _raw(results: BenchResults, goals: list[Goal], context: dict[str, object]) -> dict:
    paths = {}
    for name in results.latency:
        latency, throughput = results.latency[name], results.throughput[name]
        streaming = results.streaming[name]
        paths[name] = {
            "latency": asdict(latency),
            "throughput": {**asdict(throughput), "rps": throughput.rps},
            "streaming": {**asdict(streaming), "chunks_per_s": streaming.chunks_per_s},
        }
        if name != "direct":
            paths[name]["added_ms"] = {
                "median": added_median_ms(results, name),
                "p99": added_p99_ms(results, name),
            }
    return {
        **context,
        "paths": paths,
        "gateway_rss_kib": results.gateway_rss_kib,
        "long_run": {
            "samples": [asdict(sample) for sample in results.long_run],
            "errors": results.long_run_errors,
            "rss_growth_pct": results.rss_growth_pct,
        },
        "goals": [asdict(goal) for goal in goals],
    }


def _markdown(
    results: BenchResults, goals: list[Goal], context: dict[str, object], png_name: str
) -> str:
    machine = context["machine"]
    settings = context["settings"]
    concurrency = results.throughput["gateway"].concurrency
    streams = results.streaming["gateway"]
    lines = [
        "# Gateway benchmark: upstream direct vs our gateway vs LiteLLM",
        "",
        f"- Date: {machine['date']}",
        f"- Command: `{context['command']}`",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}",
        "- Versions: "
        + ", ".join(f"{name} {version}" for name, version in context["versions"].items()),
        "- Settings: " + ", ".join(f"{key}={value}" for key, value in settings.items()),
        "- All three paths ran at once in front of one stand-in upstream; phases ran one after "
        "another, each measured run after a warm-up on the same path.",
        "",
        f"| path | c=1 median ms | c=1 p99 ms | added median ms | added p99 ms "
        f"| req/s c={concurrency} | chunks/s ({settings['streams']} streams) "
        f"| median TTFT ms | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {name: _row(results, name) for name in results.latency}
    for name, row in rows.items():
        lines.append(_table_line(PATH_LABELS[name], [_number(value) for value in row]))
    for other in ("litellm", "direct"):
        # The last column counts failures: a ratio of those says nothing.
        ratios = [
            _ratio(ours, theirs) for ours, theirs in zip(rows["gateway"], rows[other], strict=True)
        ]
        lines.append(_table_line(f"gateway / {PATH_LABELS[other]}", [*ratios[:-1], "-"]))
    lines += [
        "",
        f"Streams: {settings['streams']} open at a time for {settings['stream_seconds']} s "
        f"({streams.streams:,} streams through the gateway), {settings['stream_tokens']} tokens "
        f"each (`ignore_eos`), stand-in pause between tokens "
        f"{settings['stream_token_delay_ms']} ms. Chunks are SSE data events other than "
        "`[DONE]`; TTFT is the time to the first chunk with non-empty content.",
        "",
        "## Gateway memory (VmRSS of its process tree, KiB)",
        "",
        "| checkpoint | RSS KiB |",
        "|---|---|",
        *(f"| {name} | {kib:,} |" for name, kib in results.gateway_rss_kib.items()),
        "",
        f"Long run: {results.long_run[-1].requests:,} requests at c={concurrency}, "
        f"{results.long_run_errors} failed, RSS {results.long_run[0].rss_kib:,} -> "
        f"{results.long_run[-1].rss_kib:,} KiB ({results.rss_growth_pct:+.1f}%).",
        "",
        "## Targets",
        "",
        *(f"- {goal.line()}" for goal in goals),
        "",
        f"![latency, throughput, streaming and RSS per path]({png_name})",
        "",
    ]
    return "\n".join(lines)


def _row(results: BenchResults, name: str) -> list[float | None]:
    latency, streaming = results.latency[name], results.streaming[name]
    direct = name == "direct"
    return [
        latency.median_ms,
        latency.p99_ms,
        None if direct else added_median_ms(results, name),
        None if direct else added_p99_ms(results, name),
        results.throughput[name].rps,
        streaming.chunks_per_s,
        streaming.ttft_median_ms,
        latency.errors + results.throughput[name].errors + streaming.incomplete,
    ]


def _table_line(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "-"
    return f"{ours / theirs:.3g}x"
