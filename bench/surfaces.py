"""Responses streams against chat streams through the all-on gateway, side by side in one run.

    .venv/bin/python -m bench.surfaces            # about three minutes
    .venv/bin/python -m bench.surfaces --quick    # smoke run

The gateway with everything on (bench/full_pipeline.py: key auth, Redis limits, a safety
policy scanning both ways, the tenant's model routed to a LoRA adapter over two stand-ins,
metrics and the access log) and the stand-in direct. For each stream count, chat and Responses
streams of the same length alternate, `--repeats` times each: relay capacity (stand-ins not
pausing) for events/s, then paced (`--paced-delay-ms` between tokens) for TTFT added over
direct. A Responses stream carries each token as a `response.output_text.delta` event plus a
few framing events, and the gateway stores it (`store` is on by default) before its last event
leaves; chat streams carry a token per chunk.

Target (issue 17): Responses events/s through the gateway >= 90% of chat's, and TTFT added no
more than chat's. Writes bench/results/surfaces.md and surfaces.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench import machine, streams
from bench.full_pipeline import running_full, standin
from bench.measures import StreamResult, tree_cpu_seconds
from bench.servers import MODEL, Target, set_token_delay, stop_on_sigterm

RESULTS_DIR = Path(__file__).with_name("results")
PROMPT = "Say something about gateways."
EVENTS_RATIO_TARGET = 0.90
CPU_SUFFIX = ":cpu"
Results = dict[str, dict[int, dict[str, dict[str, list[Any]]]]]


def bodies(tokens: int) -> dict[str, tuple[bytes, streams.Shape]]:
    """The same answer length on both surfaces (vLLM's `ignore_eos`: exactly `tokens`)."""
    chat = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "stream": True,
        "ignore_eos": True,
    }
    responses = {
        "model": MODEL,
        "input": PROMPT,
        "max_output_tokens": tokens,
        "stream": True,
        "ignore_eos": True,
    }
    return {
        "chat": (orjson.dumps(chat), streams.CHAT),
        "responses": (orjson.dumps(responses), streams.RESPONSES),
    }


def measure(
    paths: dict[str, Target],
    upstreams: list[str],
    counts: list[int],
    args: argparse.Namespace,
) -> Results:
    """results[mode][count][surface][path]: one StreamResult per repeat; under
    path + CPU_SUFFIX, the CPU milliseconds that path's processes spent per 1,000 events."""
    results: Results = {}
    for mode, delay_ms in (("relay", 0.0), ("paced", args.paced_delay_ms)):
        for upstream in upstreams:
            set_token_delay(upstream, delay_ms)
        results[mode] = {}
        for count in counts:
            by_surface: dict[str, dict[str, list[Any]]] = {}
            for _ in range(args.repeats):
                for surface, (body, shape) in bodies(args.tokens).items():
                    for target in paths.values():
                        print(f"{mode}: {count} {surface} streams via {target.name}", flush=True)
                        streams.run(target, body, count, args.warmup_seconds, shape)
                        cpu_before = tree_cpu_seconds(target.pid)
                        result = streams.run(target, body, count, args.seconds, shape)
                        cpu_ms = (tree_cpu_seconds(target.pid) - cpu_before) * 1e3
                        runs = by_surface.setdefault(surface, {})
                        runs.setdefault(target.name, []).append(result)
                        cpu = runs.setdefault(target.name + CPU_SUFFIX, [])
                        cpu.append(cpu_ms / result.chunks * 1000 if result.chunks else 0.0)
            results[mode][count] = by_surface
    for upstream in upstreams:
        set_token_delay(upstream, 0)
    return results


def summarise(results: Results) -> dict[str, dict[int, dict[str, float]]]:
    """Medians over the repeats: the gateway's events/s per surface and their ratio (relay);
    TTFT added over direct per surface (paced)."""
    summary: dict[str, dict[int, dict[str, float]]] = {"relay": {}, "paced": {}}
    for count, by_surface in results["relay"].items():
        rates = {
            surface: statistics.median(r.chunks_per_s for r in by_path["gateway-full"])
            for surface, by_path in by_surface.items()
        }
        direct = {
            surface: statistics.median(r.chunks_per_s for r in by_path["direct"])
            for surface, by_path in by_surface.items()
        }
        cpu = {
            surface: statistics.median(by_path["gateway-full" + CPU_SUFFIX])
            for surface, by_path in by_surface.items()
        }
        summary["relay"][count] = {
            "chat_cpu_ms_per_1k_events": cpu["chat"],
            "responses_cpu_ms_per_1k_events": cpu["responses"],
            "responses_over_chat_per_cpu": cpu["chat"] / cpu["responses"],
            "chat_events_per_s": rates["chat"],
            "responses_events_per_s": rates["responses"],
            "responses_over_chat": rates["responses"] / rates["chat"],
            "chat_direct_events_per_s": direct["chat"],
            "responses_direct_events_per_s": direct["responses"],
        }
    for count, by_surface in results["paced"].items():
        added = {}
        for surface, by_path in by_surface.items():
            gateway = statistics.median(r.ttft_median_ms for r in by_path["gateway-full"])
            direct_ttft = statistics.median(r.ttft_median_ms for r in by_path["direct"])
            added[f"{surface}_ttft_added_ms"] = gateway - direct_ttft
        summary["paced"][count] = added
    return summary


def write(summary: dict[str, dict[int, dict[str, float]]], raw: object, context: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "surfaces.json").write_text(
        json.dumps({"context": context, "summary": summary, "raw": raw}, indent=2) + "\n"
    )
    lines = [
        "# Responses streams vs chat streams through the all-on gateway",
        "",
        f"Command: `{context['command']}` ({context['version']}, "
        f"{context['machine']['nproc']} CPUs). Medians of {context['repeats']} alternating "
        f"repeats, {context['tokens']} tokens per stream. Raw: [surfaces.json](surfaces.json).",
        "",
        "## Relay capacity (stand-ins not pausing): events/s through the gateway",
        "",
        "| streams | chat | Responses | Responses / chat | chat direct | Responses direct |",
        "|---|---|---|---|---|---|",
    ]
    for count, row in summary["relay"].items():
        lines.append(
            f"| {count} | {row['chat_events_per_s']:,.0f} | {row['responses_events_per_s']:,.0f} "
            f"| {row['responses_over_chat']:.2f} | {row['chat_direct_events_per_s']:,.0f} "
            f"| {row['responses_direct_events_per_s']:,.0f} |"
        )
    lines += [
        "",
        "## The gateway's own cost: CPU milliseconds per 1,000 events relayed",
        "",
        "Events/s above are bounded by the two cores that the stand-ins, the gateway and the "
        "client share, and the stand-in spends more per Responses event than per chat chunk "
        "(compare the direct columns); the gateway's CPU per event is its relay's own price.",
        "",
        "| streams | chat | Responses | Responses events per CPU-second / chat's |",
        "|---|---|---|---|",
    ]
    for count, row in summary["relay"].items():
        lines.append(
            f"| {count} | {row['chat_cpu_ms_per_1k_events']:.1f} "
            f"| {row['responses_cpu_ms_per_1k_events']:.1f} "
            f"| {row['responses_over_chat_per_cpu']:.2f} |"
        )
    lines += [
        "",
        f"## Paced ({context['paced_delay_ms']} ms between tokens): median TTFT added over direct",
        "",
        "| streams | chat | Responses |",
        "|---|---|---|",
    ]
    for count, row in summary["paced"].items():
        lines.append(
            f"| {count} | {row['chat_ttft_added_ms']:+.2f} ms "
            f"| {row['responses_ttft_added_ms']:+.2f} ms |"
        )
    rate = all(r["responses_over_chat"] >= EVENTS_RATIO_TARGET for r in summary["relay"].values())
    per_cpu = all(
        r["responses_over_chat_per_cpu"] >= EVENTS_RATIO_TARGET for r in summary["relay"].values()
    )
    lines += [
        "",
        f"Target: Responses events/s >= {EVENTS_RATIO_TARGET:.0%} of chat's at every count: "
        f"{'PASS' if rate else 'FAIL'}; per gateway CPU-second: {'PASS' if per_cpu else 'FAIL'}.",
        "",
    ]
    path = RESULTS_DIR / "surfaces.md"
    path.write_text("\n".join(lines))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paced-delay-ms", type=float, default=10.0)
    args = parser.parse_args()
    counts = [32, 128]
    if args.quick:
        args.seconds, args.warmup_seconds, args.repeats, counts = 1.0, 0.3, 1, [8]
    stop_on_sigterm()
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        workdir = Path(scratch)
        replica_a = standin(workdir, "standin-a", args.tokens, stack)
        replica_b = standin(workdir, "standin-b", args.tokens, stack)
        full = stack.enter_context(running_full(workdir, replica_a.url, replica_b.url))
        paths = {
            "direct": Target("direct", replica_a.url, None, replica_a.process.pid),
            "gateway-full": full.target,
        }
        raw = measure(paths, [replica_a.url, replica_b.url], counts, args)
    summary = summarise(raw)
    context = {
        "command": " ".join(["python -m bench.surfaces", *sys.argv[1:]]),
        "machine": machine.describe(),
        "version": machine.versions("-", "-")["vllm-gateway"],
        "repeats": args.repeats,
        "tokens": args.tokens,
        "paced_delay_ms": args.paced_delay_ms,
    }
    serialised = {
        mode: {
            count: {
                surface: {
                    name: [asdict(r) if isinstance(r, StreamResult) else r for r in runs]
                    for name, runs in by_path.items()
                }
                for surface, by_path in by_surface.items()
            }
            for count, by_surface in by_count.items()
        }
        for mode, by_count in raw.items()
    }
    print(write(summary, serialised, context).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
