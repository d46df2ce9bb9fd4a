"""Write a run's results as Markdown (for people), JSON (raw numbers) and a PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench import plot
from bench.goals import Goal, added_median_ms, added_p99_ms
from bench.phases import BenchResults

PATH_LABELS = {"direct": "upstream direct", "gateway": "our gateway", "litellm": "LiteLLM proxy"}
# latest.json's key for each of BenchResults.stream_phases, in that order.
_PHASE_KEYS = ("streams_relay", "streams_paced")


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
        paths[name] = {
            "latency": asdict(latency),
            "throughput": {
                **asdict(throughput),
                "rps": throughput.rps,
                "cpu_s": results.throughput_cpu_s[name],
                "cpu_s_per_1k_requests": results.cpu_s_per_1k_requests(name),
            },
        }
        for key, phase in zip(_PHASE_KEYS, results.stream_phases, strict=True):
            streams = phase.by_path[name]
            paths[name][key] = {**asdict(streams), "chunks_per_s": streams.chunks_per_s}
        if name != "direct":
            paths[name]["added_ms"] = {
                "median": added_median_ms(results, name),
                "p99": added_p99_ms(results, name),
                **{
                    f"{key}_ttft_median": phase.added_ttft_median_ms(name)
                    for key, phase in zip(_PHASE_KEYS, results.stream_phases, strict=True)
                },
            }
    return {
        **context,
        "stream_phases": {
            key: {"label": phase.label, "token_delay_ms": phase.token_delay_ms}
            for key, phase in zip(_PHASE_KEYS, results.stream_phases, strict=True)
        },
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
        "## Plain requests",
        "",
        f"| path | c=1 median ms | c=1 p99 ms | added median ms | added p99 ms "
        f"| req/s c={concurrency} | CPU s per 1k requests (c={concurrency}) | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = {name: _plain_row(results, name) for name in results.latency}
    for name, row in rows.items():
        lines.append(_table_line(PATH_LABELS[name], [number(value) for value in row]))
    for other in ("litellm", "direct"):
        # The last column counts failures: a ratio of those says nothing.
        ratios = [
            ratio(ours, theirs) for ours, theirs in zip(rows["gateway"], rows[other], strict=True)
        ]
        lines.append(_table_line(f"gateway / {PATH_LABELS[other]}", [*ratios[:-1], "-"]))
    lines += [
        "",
        f"CPU s per 1k requests: user + system CPU seconds (from /proc/PID/stat) that each "
        f"path's own process tree spent during its measured c={concurrency} run, per 1,000 "
        "requests answered. For the upstream direct that is the stand-in itself; for our "
        "gateway and LiteLLM it is the proxy alone, without the stand-in behind it.",
        "",
        f"## Streams: {settings['streams']} open at a time, {settings['stream_tokens']} tokens "
        "each",
        "",
        "| phase | path | chunks/s | median TTFT ms | p99 TTFT ms | added median TTFT ms "
        "| median ITL ms | p99 ITL ms | streams | incomplete |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in results.stream_phases:
        for name, streams in phase.by_path.items():
            added = None if name == "direct" else phase.added_ttft_median_ms(name)
            cells = [
                streams.chunks_per_s,
                streams.ttft_median_ms,
                streams.ttft_p99_ms,
                added,
                streams.itl_median_ms,
                streams.itl_p99_ms,
                streams.streams,
                streams.incomplete,
            ]
            lines.append(
                f"| {phase.label} | {PATH_LABELS[name]} | "
                + " | ".join(number(cell) for cell in cells)
                + " |"
            )
    lines += [
        "",
        f"Each phase keeps {settings['streams']} streams open on one path at a time for "
        f"{settings['stream_seconds']} s (`ignore_eos`, so every stream is "
        f"{settings['stream_tokens']} tokens long). Relay capacity: the stand-in does not pause "
        "between tokens, so chunks/s is how fast a path relays; on this small machine TTFT "
        "there mostly measures CPU contention. Paced: the stand-in pauses "
        f"{results.paced_streams.token_delay_ms:g} ms between tokens, about what vLLM on a GPU "
        "gives each stream under load; the TTFT target is judged on this phase. Chunks are SSE "
        "data events other than `[DONE]`; TTFT is the time to the first chunk with non-empty "
        "content; ITL is the gap between consecutive chunks after it.",
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
        f"![latency, throughput, CPU, streaming and RSS per path]({png_name})",
        "",
    ]
    return "\n".join(lines)


def _plain_row(results: BenchResults, name: str) -> list[float | None]:
    latency, throughput = results.latency[name], results.throughput[name]
    direct = name == "direct"
    return [
        latency.median_ms,
        latency.p99_ms,
        None if direct else added_median_ms(results, name),
        None if direct else added_p99_ms(results, name),
        throughput.rps,
        results.cpu_s_per_1k_requests(name),
        latency.errors + throughput.errors,
    ]


def _table_line(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "-"
    return f"{ours / theirs:.3g}x"
