"""Full-pipeline benchmark: the gateway with everything on and everything off, against the
upstream direct and LiteLLM's proxy, in one run on this machine.

    .venv/bin/python -m bench.full            # about six minutes
    .venv/bin/python -m bench.full --quick    # smoke run
    .venv/bin/python -m bench.full --baseline DIR   # A/B against an earlier commit's tree

Paths, all running at once: `direct` (stand-in A), `gateway-full` (bench/full_pipeline.py:
key auth, Redis store and limits, safety policy, the tenant's model routed to a LoRA adapter
over stand-ins A and B, metrics, access log), `gateway-strict` (the same with
`limits.early_dispatch=false`: every request waits for Redis before going upstream, the
limiter's behaviour before early dispatch), `gateway-off` (auth, metrics and access log
off, in front of A) and `litellm` (master key, in front of A). Same chat bodies everywhere
(model "base", `ignore_eos`). Phases, each path in turn, each measured run after a warm-up:
latency at c=1 (median, p99, added over direct); requests/s at c=16 and c=64 with the CPU
seconds each path's own process tree spends per 1,000 requests; streams with 32 and 128 open
at once, relay capacity (stand-ins not pausing) for chunks/s and paced (`--paced-delay-ms`
between tokens) for TTFT; RSS of each path's process tree at the end.

`--baseline DIR` (a source tree of an earlier commit: `git archive <commit> | tar -x -C DIR`)
adds `gateway-full@baseline` and `gateway-off@baseline`: the same gateways launched from DIR
(working directory DIR, same interpreter, so `python -m gateway.cli` imports DIR's `gateway`;
checked before measuring), each measured right after its twin, and an A/B table of after /
baseline ratios.

Writes bench/results/full.md, full.json and full.png; prints PASS/FAIL per target and exits 1
when one is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from matplotlib.figure import Figure

from bench import full_pipeline, goals, litellm_peer, loadgen, machine, streams
from bench.full_pipeline import FullPipeline
from bench.goals import Goal
from bench.loadgen import plain_load
from bench.measures import PlainResult, StreamResult, tree_cpu_seconds
from bench.phases import BenchSettings
from bench.processes import REPO_ROOT
from bench.report import number, ratio
from bench.rss import tree_rss_kib
from bench.servers import Target, set_token_delay, start_litellm, stop_on_sigterm

RESULTS_DIR = Path(__file__).with_name("results")
LABELS = {
    "direct": "upstream direct",
    "gateway-full": "gateway, all on",
    "gateway-strict": "gateway, all on, no early dispatch",
    "gateway-off": "gateway, all off",
    "litellm": "LiteLLM proxy",
    "gateway-full@baseline": "gateway, all on, baseline",
    "gateway-off@baseline": "gateway, all off, baseline",
}
_COLORS = {
    "direct": "#7f7f7f",
    "gateway-full": "#2ca02c",
    "gateway-strict": "#1f77b4",
    "gateway-off": "#98df8a",
    "gateway-full@baseline": "#9467bd",
    "gateway-off@baseline": "#c5b0d5",
}
STRICT_SETTINGS = {"VLLM_GATEWAY_LIMITS__EARLY_DISPATCH": "false"}
PLAIN_CONCURRENCY = (16, 64)
STREAM_COUNTS = (32, 128)
BASELINE = "@baseline"
# The paths that --baseline measures from both trees, as `name` and `name + BASELINE`.
AB_PATHS = ("gateway-full", "gateway-off")
# The targets of issue 21, item 4 (the CPU hot path at its floor), besides the stream relay's
# and no failures (bench/goals.py).
FLOOR_MARGIN_MS = 0.15  # all on's added c=1 median over all off's
LATENCY_DIVISOR = 20  # all on's added c=1 median against LiteLLM's
THROUGHPUT_FACTOR = 30  # requests/s at c=16 against LiteLLM's
CPU_FACTOR = 1.5  # CPU per request at c=16 against all off's


@dataclass
class FullResults:
    """Everything measured, by path name; streams by (phase label, open streams)."""

    latency: dict[str, PlainResult] = field(default_factory=dict)
    rps: dict[int, dict[str, PlainResult]] = field(default_factory=dict)
    cpu_s: dict[int, dict[str, float]] = field(default_factory=dict)
    streams: dict[str, dict[int, dict[str, StreamResult]]] = field(default_factory=dict)
    rss_kib: dict[str, dict[str, int]] = field(default_factory=dict)

    def added_ms(self, path: str, stat: str) -> float:
        return getattr(self.latency[path], stat) - getattr(self.latency["direct"], stat)

    def cpu_per_1k(self, concurrency: int, path: str) -> float:
        done = self.rps[concurrency][path].requests
        return self.cpu_s[concurrency][path] / done * 1000 if done else math.nan

    def failures(self, path: str) -> int:
        plain = [self.latency[path], *(by_path[path] for by_path in self.rps.values())]
        streamed = [
            by_path[path] for by_count in self.streams.values() for by_path in by_count.values()
        ]
        return sum(r.errors for r in plain) + sum(r.incomplete for r in streamed)


# What the A/B table compares: a JSON key, a label, and how to read it for a path.
AB_METRICS: tuple[tuple[str, str, Callable[[FullResults, str], float]], ...] = (
    ("added_median_ms", "c=1 added median ms", lambda r, n: r.added_ms(n, "median_ms")),
    ("added_p99_ms", "c=1 added p99 ms", lambda r, n: r.added_ms(n, "p99_ms")),
    *((f"rps_c{c}", f"req/s c={c}", lambda r, n, c=c: r.rps[c][n].rps) for c in PLAIN_CONCURRENCY),
    *(
        (f"cpu_s_per_1k_c{c}", f"CPU s/1k req c={c}", lambda r, n, c=c: r.cpu_per_1k(c, n))
        for c in PLAIN_CONCURRENCY
    ),
    (
        f"chunks_per_s_relay_{STREAM_COUNTS[-1]}",
        f"chunks/s, {STREAM_COUNTS[-1]} streams, relay",
        lambda r, n: r.streams["relay"][STREAM_COUNTS[-1]][n].chunks_per_s,
    ),
    (
        f"ttft_median_ms_paced_{STREAM_COUNTS[-1]}",
        f"median TTFT ms, {STREAM_COUNTS[-1]} streams, paced",
        lambda r, n: r.streams["paced"][STREAM_COUNTS[-1]][n].ttft_median_ms,
    ),
)


def ab(results: FullResults) -> dict[str, dict[str, dict[str, float | None]]]:
    """For each path measured from both trees, each A/B metric: after (this working tree),
    baseline, and after / baseline."""
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for name in AB_PATHS:
        table[name] = {}
        for key, _, value in AB_METRICS:
            after, baseline = value(results, name), value(results, name + BASELINE)
            table[name][key] = {
                "after": after,
                "baseline": baseline,
                "ratio": after / baseline if baseline else None,
            }
    return table


def run_phases(
    paths: dict[str, Target], upstreams: list[str], settings: BenchSettings, seconds: int
) -> FullResults:
    results = FullResults()
    results.rss_kib["start"] = {name: tree_rss_kib(t.pid) for name, t in paths.items()}
    plain = settings.plain_body()
    for target in paths.values():
        _announce("latency at c=1", target)
        plain_load(target, plain, 1, settings.warmup_seconds)
        results.latency[target.name] = plain_load(target, plain, 1, seconds)
    for concurrency in PLAIN_CONCURRENCY:
        results.rps[concurrency], results.cpu_s[concurrency] = {}, {}
        for target in paths.values():
            _announce(f"requests/s at c={concurrency}", target)
            plain_load(target, plain, concurrency, settings.warmup_seconds)
            before = tree_cpu_seconds(target.pid)
            results.rps[concurrency][target.name] = plain_load(target, plain, concurrency, seconds)
            results.cpu_s[concurrency][target.name] = tree_cpu_seconds(target.pid) - before
    body = settings.stream_body()
    for label, delay_ms in (("relay", 0.0), ("paced", settings.paced_token_delay_ms)):
        for upstream in upstreams:
            set_token_delay(upstream, delay_ms)
        results.streams[label] = {}
        for count in STREAM_COUNTS:
            results.streams[label][count] = {}
            for target in paths.values():
                _announce(f"{count} streams, {label}", target)
                streams.run(target, body, count, settings.warmup_seconds)
                results.streams[label][count][target.name] = streams.run(
                    target, body, count, seconds
                )
    for upstream in upstreams:
        set_token_delay(upstream, 0)
    results.rss_kib["end"] = {name: tree_rss_kib(t.pid) for name, t in paths.items()}
    return results


def evaluate(results: FullResults) -> list[Goal]:
    """The targets of issue 21 (the CPU hot path at its floor), judged in this run: the all-on
    gateway against LiteLLM, against the all-off gateway (the floor) and against direct."""
    ours, floor, peer = "gateway-full", "gateway-off", "litellm"
    added, peer_added = results.added_ms(ours, "median_ms"), results.added_ms(peer, "median_ms")
    floor_added = results.added_ms(floor, "median_ms")
    rps, peer_rps = results.rps[16][ours].rps, results.rps[16][peer].rps
    cpu, floor_cpu = results.cpu_per_1k(16, ours), results.cpu_per_1k(16, floor)
    verdicts = [
        Goal(
            f"all on: added median latency at c=1 <= all off + {FLOOR_MARGIN_MS} ms",
            f"{added:.3f} ms vs all off {floor_added:.3f} ms "
            f"(limit {floor_added + FLOOR_MARGIN_MS:.3f} ms)",
            added <= floor_added + FLOOR_MARGIN_MS,
        ),
        Goal(
            f"all on: added median latency at c=1 <= 1/{LATENCY_DIVISOR} of LiteLLM's",
            f"{added:.3f} ms vs {peer_added:.3f} ms (limit {peer_added / LATENCY_DIVISOR:.3f} ms)",
            added <= peer_added / LATENCY_DIVISOR,
        ),
        Goal(
            f"all on: requests/s at c=16 >= {THROUGHPUT_FACTOR}x LiteLLM's",
            f"{rps:,.0f} vs {peer_rps:,.0f} ({ratio(rps, peer_rps)})",
            rps >= peer_rps * THROUGHPUT_FACTOR,
        ),
        Goal(
            f"all on: CPU per request at c=16 <= {CPU_FACTOR}x all off's",
            f"{cpu:.3f} vs {floor_cpu:.3f} CPU s per 1k requests ({ratio(cpu, floor_cpu)})",
            cpu <= floor_cpu * CPU_FACTOR,
        ),
    ]
    for count in STREAM_COUNTS:
        paced = results.streams["paced"][count]
        ttft_added = paced[ours].ttft_median_ms - paced["direct"].ttft_median_ms
        verdicts.append(
            Goal(
                f"all on: median TTFT added, {count} streams paced, <= {goals.TTFT_MARGIN_MS:g} ms",
                f"{ttft_added:+.2f} ms ({paced[ours].ttft_median_ms:.2f} vs direct "
                f"{paced['direct'].ttft_median_ms:.2f} ms)",
                ttft_added <= goals.TTFT_MARGIN_MS,
            )
        )
    for count in STREAM_COUNTS:
        chunks = results.streams["relay"][count][ours].chunks_per_s
        peer_chunks = results.streams["relay"][count][peer].chunks_per_s
        verdicts.append(
            Goal(
                f"all on: stream chunks/s, {count} streams relay capacity, >= 15x LiteLLM's",
                f"{chunks:,.0f} vs {peer_chunks:,.0f} ({ratio(chunks, peer_chunks)})",
                chunks >= peer_chunks * goals.STREAM_CHUNKS_FACTOR,
            )
        )
    for name in (n for n in results.latency if n.startswith("gateway-")):
        failed = results.failures(name)
        verdicts.append(
            Goal(
                f"{name}: no failed requests or incomplete streams", f"{failed} failed", failed == 0
            )
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    seconds = 2 if args.quick else 5
    settings = BenchSettings(
        latency_seconds=seconds,
        throughput_seconds=seconds,
        warmup_seconds=1,
        throughput_concurrency=16,
        plain_tokens=16,
        streams=32,
        stream_tokens=64,
        stream_seconds=seconds,
        paced_token_delay_ms=args.paced_delay_ms,
        rss_requests=0,
        rss_samples=0,
    )
    stop_on_sigterm()
    context: dict[str, object] = {
        "command": shlex.join([".venv/bin/python", "-m", "bench.full", *argv]),
        "machine": machine.describe(),
        "versions": machine.versions(litellm_peer.ensure_installed(), loadgen.client_name()),
        "settings": {"measured_seconds": seconds, **vars(settings)},
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-full-"))
    print(f"{time.strftime('%H:%M:%S')}  starting the paths; logs in {workdir}", flush=True)
    try:
        with ExitStack() as stack:
            paths, upstreams, pipelines = _start_paths(
                workdir, settings.plain_tokens, args.baseline, stack
            )
            _check_answers(paths, settings.plain_body())
            if args.baseline:
                context["baseline"] = {
                    "source": str(args.baseline),
                    "gateway_code": _gateway_code(paths, args.baseline),
                    **_pipeline_facts(pipelines["gateway-full" + BASELINE]),
                }
            results = run_phases(paths, upstreams, settings, seconds)
    except BaseException:
        print(f"benchmark aborted; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir)
    context["pipeline"] = _pipeline_facts(pipelines["gateway-full"])
    verdicts = evaluate(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "full.json").write_text(
        json.dumps(_raw(results, verdicts, context), indent=2) + "\n"
    )
    (args.out_dir / "full.md").write_text(_markdown(results, verdicts, context))
    _plot(results, args.out_dir / "full.png")
    print("\n".join(verdict.line() for verdict in verdicts))
    return 0 if all(verdict.passed for verdict in verdicts) else 1


def _start_paths(
    workdir: Path, max_tokens: int, baseline: Path | None, stack: ExitStack
) -> tuple[dict[str, Target], list[str], dict[str, FullPipeline]]:
    """Start every path, in measuring order (a baseline twin right after its path, so drift
    between the two is least), stopped when `stack` closes; return them, the stand-ins' URLs
    and the all-on gateways' setups by path name."""
    first = full_pipeline.standin(workdir, "standin-a", max_tokens, stack)
    second = full_pipeline.standin(workdir, "standin-b", max_tokens, stack)

    def full(name: str, settings: dict[str, str] | None, source: Path) -> FullPipeline:
        return stack.enter_context(
            full_pipeline.running_full(workdir, first.url, second.url, name, settings, source)
        )

    pipelines = {"gateway-full": full("gateway-full", None, REPO_ROOT)}
    if baseline:
        pipelines["gateway-full" + BASELINE] = full("gateway-full" + BASELINE, None, baseline)
    pipelines["gateway-strict"] = full("gateway-strict", STRICT_SETTINGS, REPO_ROOT)
    paths = {
        "direct": Target("direct", first.url, None, first.process.pid),
        **{name: pipeline.target for name, pipeline in pipelines.items()},
        "gateway-off": full_pipeline.start_off(workdir, first.url, stack),
    }
    if baseline:
        name = "gateway-off" + BASELINE
        paths[name] = full_pipeline.start_off(workdir, first.url, stack, name, baseline)
    paths["litellm"] = start_litellm(workdir, first.url, stack)
    return paths, [first.url, second.url], pipelines


def _gateway_code(paths: dict[str, Target], baseline: Path) -> dict[str, str]:
    """The `gateway` package each gateway path runs, by path name; fail when a `@baseline`
    path does not run `baseline`'s or another path does not run this working tree's."""
    code = {}
    for name, target in paths.items():
        if name.startswith("gateway-"):
            tree = (baseline if name.endswith(BASELINE) else REPO_ROOT).resolve()
            imported = full_pipeline.imported_gateway(target.pid)
            if not imported.is_relative_to(tree):
                raise RuntimeError(f"{name} imports {imported}, not the gateway in {tree}")
            code[name] = str(imported)
    return code


def _check_answers(paths: dict[str, Target], body: bytes) -> None:
    """A path answering 401 fast would look like a fast path: fail before measuring."""
    for target in paths.values():
        reply = httpx.post(target.chat_url, content=body, headers=target.headers(), timeout=30)
        if reply.status_code != 200 or not reply.json().get("choices"):
            raise RuntimeError(f"{target.name} answered {reply.status_code}: {reply.text[:500]}")


def _pipeline_facts(full: FullPipeline) -> dict[str, object]:
    return {
        "redis": full_pipeline.REDIS_URL,
        "redis_prefix": full.redis_prefix,
        "limits": full_pipeline.GENEROUS_LIMITS,
        "adapter": full_pipeline.ADAPTER,
        "replicas": 2,
        "safety_policy": full_pipeline.SAFETY_POLICY,
        "safety_admin_reply": full.safety_admin_reply,
        "safety_enforced": full.safety_enforced,
    }


def _raw(results: FullResults, verdicts: list[Goal], context: dict[str, object]) -> dict:
    paths = {}
    for name in results.latency:
        paths[name] = {
            "latency_c1": asdict(results.latency[name]),
            "added_ms": None
            if name == "direct"
            else {
                "median": results.added_ms(name, "median_ms"),
                "p99": results.added_ms(name, "p99_ms"),
            },
            **{
                f"plain_c{c}": {
                    **asdict(results.rps[c][name]),
                    "rps": results.rps[c][name].rps,
                    "cpu_s": results.cpu_s[c][name],
                    "cpu_s_per_1k_requests": results.cpu_per_1k(c, name),
                }
                for c in PLAIN_CONCURRENCY
            },
            **{
                f"streams_{label}_{count}": {
                    **asdict(by_path[name]),
                    "chunks_per_s": by_path[name].chunks_per_s,
                }
                for label, by_count in results.streams.items()
                for count, by_path in by_count.items()
            },
            "rss_kib": {when: by_path[name] for when, by_path in results.rss_kib.items()},
        }
    if "baseline" in context:
        context = {**context, "ab": ab(results)}
    return {**context, "paths": paths, "goals": [asdict(v) for v in verdicts]}


def _markdown(results: FullResults, verdicts: list[Goal], context: dict) -> str:
    m, s, p = context["machine"], context["settings"], context["pipeline"]
    safety = full_pipeline.safety_status(p["safety_enforced"], p["safety_admin_reply"])
    names = list(results.latency)
    baseline = context.get("baseline")
    lines = [
        "# Full-pipeline benchmark: gateway all on / all off vs direct vs LiteLLM",
        "",
        f"- Date: {m['date']}",
        f"- Command: `{context['command']}`",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in context["versions"].items()),
        f"- Each measured run: {s['measured_seconds']} s after a {s['warmup_seconds']} s warm-up; "
        f"plain answers {s['plain_tokens']} tokens, streams {s['stream_tokens']} tokens "
        "(`ignore_eos`).",
        "- Gateway all on: key auth (Redis store), Redis limits per tenant (generous, never "
        f"hit), the tenant's model routed to LoRA adapter `{p['adapter']}` over 2 stand-in "
        "replicas (both preload it), Prometheus metrics, access log. Safety policy (one input "
        f"rule, one output rule): {safety}.",
        "- Gateway all off: `auth.enabled=false`, metrics and access log off, one upstream.",
        "- Direct, all-off and LiteLLM use stand-in A; all-on spreads over A and B, so at high "
        "concurrency it has twice the upstream processes (CPU s per 1k counts each proxy's own "
        "process tree only).",
        *(_baseline_lines(baseline) if baseline else []),
        "",
        "## Plain requests",
        "",
        "| path | c=1 median ms | c=1 p99 ms | added median ms | added p99 ms | req/s c=16 "
        "| req/s c=64 | CPU s/1k req c=16 | CPU s/1k req c=64 | RSS end MiB | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        direct = name == "direct"
        cells = [
            results.latency[name].median_ms,
            results.latency[name].p99_ms,
            None if direct else results.added_ms(name, "median_ms"),
            None if direct else results.added_ms(name, "p99_ms"),
            results.rps[16][name].rps,
            results.rps[64][name].rps,
            results.cpu_per_1k(16, name),
            results.cpu_per_1k(64, name),
            results.rss_kib["end"][name] / 1024,
            results.failures(name),
        ]
        lines.append(f"| {LABELS[name]} | " + " | ".join(number(c) for c in cells) + " |")
    lines += [
        "",
        f"## Streams ({s['stream_tokens']} tokens each)",
        "",
        "Relay capacity: stand-ins do not pause between tokens (chunks/s = how fast a path "
        f"relays). Paced: stand-ins pause {s['paced_token_delay_ms']:g} ms between tokens, "
        "about a GPU under load; TTFT is judged there.",
        "",
        "| phase | streams | path | chunks/s | median TTFT ms | p99 TTFT ms | added median TTFT ms "
        "| median ITL ms | p99 ITL ms | incomplete |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, by_count in results.streams.items():
        for count, by_path in by_count.items():
            for name, r in by_path.items():
                added = (
                    None
                    if name == "direct"
                    else r.ttft_median_ms - by_path["direct"].ttft_median_ms
                )
                cells = [
                    r.chunks_per_s,
                    r.ttft_median_ms,
                    r.ttft_p99_ms,
                    added,
                    r.itl_median_ms,
                    r.itl_p99_ms,
                    r.incomplete,
                ]
                lines.append(
                    f"| {label} | {count} | {LABELS[name]} | "
                    + " | ".join(number(c) for c in cells)
                    + " |"
                )
    if baseline:
        lines += _ab_lines(results, baseline["source"])
    lines += [
        "",
        "## Targets (issue 21: the all-on gateway against LiteLLM, all off and direct, same run)",
        "",
        *(f"- {v.line()}" for v in verdicts),
        "",
        "![latency, throughput, CPU, RSS and streaming per path](full.png)",
        "",
    ]
    return "\n".join(lines)


def _baseline_lines(baseline: dict[str, Any]) -> list[str]:
    safety = full_pipeline.safety_status(
        baseline["safety_enforced"], baseline["safety_admin_reply"]
    )
    code = ", ".join(f"{name} `{file}`" for name, file in baseline["gateway_code"].items())
    return [
        f"- Baseline: the `{BASELINE}` paths are the same gateways launched from "
        f"`{baseline['source']}` (an earlier commit's tree); each ran its measurements right "
        f"after its twin from this working tree. Gateway code each path imports: {code}. "
        f"Baseline all-on safety policy: {safety}.",
    ]


def _ab_lines(results: FullResults, source: str) -> list[str]:
    table = ab(results)
    labels = [LABELS[name] for name in AB_PATHS]
    header = " | ".join(f"{label} | {label}, baseline | after / baseline" for label in labels)
    lines = [
        "",
        f"## A/B: this working tree (after) against `{source}` (baseline), same run",
        "",
        "after / baseline under 1x for latency, CPU and TTFT, and over 1x for req/s and "
        "chunks/s, means the working tree is faster.",
        "",
        f"| metric | {header} |",
        "|---|" + "---|---|---|" * len(AB_PATHS),
    ]
    for key, label, _ in AB_METRICS:
        cells = []
        for name in AB_PATHS:
            after, baseline = table[name][key]["after"], table[name][key]["baseline"]
            cells += [number(after), number(baseline), ratio(after, baseline)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _plot(results: FullResults, path: Path) -> None:
    names = list(results.latency)
    panels = [
        ("added median latency at c=1 (ms)", [results.added_ms(n, "median_ms") for n in names]),
        ("added p99 latency at c=1 (ms)", [results.added_ms(n, "p99_ms") for n in names]),
        ("requests/s at c=16", [results.rps[16][n].rps for n in names]),
        ("requests/s at c=64", [results.rps[64][n].rps for n in names]),
        ("CPU s per 1k requests at c=16", [results.cpu_per_1k(16, n) for n in names]),
        ("CPU s per 1k requests at c=64", [results.cpu_per_1k(64, n) for n in names]),
        ("RSS at end (MiB)", [results.rss_kib["end"][n] / 1024 for n in names]),
        (
            f"p99 TTFT ms, {STREAM_COUNTS[-1]} streams, paced",
            [results.streams["paced"][STREAM_COUNTS[-1]][n].ttft_p99_ms for n in names],
        ),
    ]
    for count in STREAM_COUNTS:
        relay, paced = results.streams["relay"][count], results.streams["paced"][count]
        panels.append((f"chunks/s, {count} streams, relay", [relay[n].chunks_per_s for n in names]))
        panels.append(
            (f"median TTFT ms, {count} streams, paced", [paced[n].ttft_median_ms for n in names])
        )
    figure = Figure(figsize=(18, 11), layout="constrained")
    for axis, (title, values) in zip(figure.subplots(3, 4).flat, panels, strict=True):
        bars = axis.bar(
            [LABELS[n] for n in names], values, color=[_COLORS.get(n, "#d62728") for n in names]
        )
        axis.bar_label(bars, fmt=lambda v: f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
        axis.set_title(title)
        axis.tick_params(axis="x", labelsize=7)
    figure.savefig(path, dpi=100)


def _announce(phase: str, target: Target) -> None:
    print(f"  {time.strftime('%H:%M:%S')}  {phase}: {target.name}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.full", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 s measured runs: a smoke run")
    parser.add_argument(
        "--paced-delay-ms",
        type=float,
        default=5.0,
        help="stand-in pause between tokens, paced phase",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results go")
    parser.add_argument(
        "--baseline",
        type=_source_tree,
        metavar="DIR",
        help="also measure the full and off gateways launched from DIR, an earlier commit's "
        "source tree (git archive <commit> | tar -x -C DIR), and report after / baseline",
    )
    return parser


def _source_tree(value: str) -> Path:
    tree = Path(value).resolve()
    if not (tree / "gateway" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"{tree} has no gateway/cli.py")
    return tree


if __name__ == "__main__":
    raise SystemExit(main())
