"""Send the same streaming load to vLLM directly and through the gateway, at each concurrency,
and write the results: the measuring part of the GPU benchmark.

    python -m bench.gpu.compare --upstream URL --gateway URL --admin-key KEY \\
        --tokenizer MODEL_DIR --gateway-pid PID --out-dir DIR

bench/gpu/device_run.sh runs it on the GPU machine (and here against the stand-in, DRY_RUN=1).
It imports the load client first, while the servers are still starting, then waits for both,
makes the tenants of bench/gpu/tenants.json (one LoRA adapter each), warms each path up, and
measures each concurrency `--repeats` times in paired runs: the direct lanes and the gateway
lanes at once, each path with that many streams of its own (so vLLM carries twice as many).
Both paths then share every moment of the server (its batch, its queue, its prefix cache),
which sequential runs cannot give: vLLM's own TTFT moved by 20% and more between two direct
runs back to back (bench/results/gpu-bench-sequential*.md). The direct path sends the same
lanes with the adapter names the gateway would have routed to; every lane draws its own
random prompts (its own seed), so the prefix cache favours neither. Each run also records what
the servers saw (bench/gpu/server_side.py) and, on the gateway path, where each request's TTFT
went (bench/gpu/timelines.py: the client's timings joined with the gateway's access log).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from dataclasses import replace
from functools import partial
from pathlib import Path

from bench import machine
from bench.goals import Goal
from bench.gpu import report, server_side, tenants, timelines
from bench.gpu.clients import BenchServeClient, Lane, LoadClient, StreamsClient, Workload
from bench.gpu.report import PathRun
from bench.measures import tree_cpu_seconds
from bench.processes import pid_alive, wait_until_ready

_WARMUP = Workload(
    concurrency=16, prompts_per_stream=1, input_len=256, output_len=16, tokenizer="", seed=0
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    client = _first_client(args)
    servers = [
        ("vLLM", f"{args.upstream}/health", args.upstream_pid, args.upstream_log),
        ("the gateway", f"{args.gateway}/healthz", args.gateway_pid, args.gateway_log),
    ]
    for what, url, pid, log_path in servers:
        _log(f"waiting for {url}")
        wait_until_ready(url, args.wait_s, partial(pid_alive, pid), log_path, what, 1.0)
    made = tenants.provision(args.gateway, args.admin_key)
    paths = {
        "direct": [Lane(args.upstream, tenant.adapter, None) for tenant in made],
        "gateway": [Lane(args.gateway, tenant.public_model, tenant.api_key) for tenant in made],
    }
    client = _warm_up(client, paths, args)

    runs: list[PathRun] = []
    seed = 1000
    for concurrency in args.concurrency:
        for _ in range(args.repeats):
            seed += sum(len(lanes) for lanes in paths.values())
            _log(f"{concurrency} streams per path, both paths at once")
            runs += _measure(client, args, paths, _workload(args, concurrency, seed))

    expected = len(args.concurrency) * args.repeats * len(paths)
    goals = [
        Goal("every run completed", f"{len(runs)} of {expected}", len(runs) == expected),
        *report.evaluate(runs),
    ]
    context = _context(args, argv, client, paths)
    for written in report.write_all(args.out_dir, runs, goals, context):
        print(f"wrote {written}")
    for goal in goals:
        print(goal.line())
    return 0 if all(goal.passed for goal in goals) else 1


def _measure(
    client: LoadClient, args: argparse.Namespace, paths: dict[str, list[Lane]], load: Workload
) -> list[PathRun]:
    """One paired run: each path's own streams, all at once. vLLM's figures cover both paths;
    the gateway's (CPU, access log) are the gateway row's."""
    start = server_side.mark(args.upstream, args.gateway_log)
    vllm_log_offset = _size(args.upstream_log)
    cpu_before = tree_cpu_seconds(args.gateway_pid)
    try:
        results = client.run_paths(paths, load)
    except Exception:
        # One broken run must not cost the others, on a machine lent for minutes.
        traceback.print_exc()
        return []
    cpu_s = tree_cpu_seconds(args.gateway_pid) - cpu_before
    servers = server_side.since(start, args.upstream, args.gateway_log)
    shared = {name: value for name, value in servers.items() if name.startswith("vllm_")}
    queued = timelines.queue_entries(args.upstream_log, vllm_log_offset)
    runs = []
    for path, result in results.items():
        ours = path == "gateway"
        timeline = None
        if ours and args.gateway_log is not None and result.timings:
            timeline = timelines.decompose(result.timings, args.gateway_log, start.log_offset)
            if queued and args.upstream_log is not None:
                ids = {timing["id"] for timing in result.timings}
                timeline["frontend"] = timelines.frontend_split(
                    args.gateway_log, args.upstream_log, ids.__contains__
                )
        runs.append(
            PathRun(
                path,
                load.concurrency,
                result,
                cpu_s if ours else None,
                servers if ours else shared,
                timeline,
                timelines.split_at_queue(result.timings, queued) if queued else None,
            )
        )
        _log(
            f"  {path}: {result.output_tokens_per_s:,.0f} tok/s, TTFT p50 {result.ttft_p50_ms:.1f}"
            f" ms, {result.requests} requests, {result.failed} failed"
        )
    _log("  servers: " + ", ".join(f"{k} {v:.1f}" for k, v in servers.items() if v is not None))
    return runs


def _size(path: Path | None) -> int:
    return path.stat().st_size if path is not None and path.exists() else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--upstream", required=True, help="vLLM's base URL")
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--admin-key", required=True, help="an admin key of the gateway")
    parser.add_argument("--tokenizer", required=True, help="the served model's folder")
    parser.add_argument(
        "--gateway-pid", type=int, required=True, help="for the gateway's CPU seconds"
    )
    parser.add_argument(
        "--upstream-pid",
        type=int,
        required=True,
        help="vLLM's: the wait for it ends when it exits",
    )
    parser.add_argument("--upstream-log", type=Path, help="vLLM's output: its tail if it dies")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument(
        "--prompts-per-stream",
        type=int,
        default=8,
        help="requests per run = concurrency x this (default 8)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="paired runs per concurrency (default 2)",
    )
    parser.add_argument(
        "--gateway-log",
        type=Path,
        help="the gateway's stdout (its JSON access log): gateway-side TTFT and overhead",
    )
    parser.add_argument("--input-len", type=int, default=256, help="prompt tokens (default 256)")
    parser.add_argument("--output-len", type=int, default=128, help="output tokens (default 128)")
    parser.add_argument(
        "--client",
        choices=["auto", "vllm", "streams"],
        default="auto",
        help="auto: `vllm bench serve` where it imports and runs, else bench/streams.py",
    )
    parser.add_argument(
        "--streams-seconds",
        type=float,
        default=15.0,
        help="length of each run when bench/streams.py sends the load (default 15)",
    )
    parser.add_argument(
        "--wait-s",
        type=float,
        default=600.0,
        help="for the servers to be up (a server that exits ends the wait at once)",
    )
    parser.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a line for the report (GPU, revision, server arguments; repeatable)",
    )
    return parser


def _first_client(args: argparse.Namespace) -> LoadClient:
    if args.client == "streams":
        return StreamsClient(args.streams_seconds)
    try:
        return BenchServeClient()
    except Exception:
        if args.client == "vllm":
            raise
        traceback.print_exc()
        _log("vllm bench serve does not import here: the load goes through bench/streams.py")
        return StreamsClient(args.streams_seconds)


def _warm_up(
    client: LoadClient, paths: dict[str, list[Lane]], args: argparse.Namespace
) -> LoadClient:
    """A short run on each path (adapters loaded, connections open); a `vllm bench serve` that
    fails here hands the whole benchmark to bench/streams.py, unless asked for by name."""
    warmup = replace(_WARMUP, tokenizer=args.tokenizer)
    for path, lanes in paths.items():
        _log(f"warm-up, {path}, {client.name}")
        try:
            client.run(lanes, warmup)
        except Exception:
            if isinstance(client, StreamsClient) or args.client == "vllm":
                raise
            traceback.print_exc()
            _log("vllm bench serve failed: the load goes through bench/streams.py")
            return _warm_up(StreamsClient(args.streams_seconds), paths, args)
    return client


def _workload(args: argparse.Namespace, concurrency: int, seed: int) -> Workload:
    return Workload(
        concurrency=concurrency,
        prompts_per_stream=args.prompts_per_stream,
        input_len=args.input_len,
        output_len=args.output_len,
        tokenizer=args.tokenizer,
        seed=seed,
    )


def _context(
    args: argparse.Namespace, argv: list[str], client: LoadClient, paths: dict[str, list[Lane]]
) -> dict[str, object]:
    described = machine.describe()
    context: dict[str, object] = {
        "Date": described["date"],
        "Command": shlex.join(["python", "-m", "bench.gpu.compare", *_redacted(argv)]),
        "Machine": f"{described['nproc']} CPUs ({described['cpu_model']}), "
        f"{described['memory_gib']} GiB, Linux {described['kernel']}, "
        f"Python {described['python']}",
        "Load client": client.name,
        "Load": f"{args.input_len} prompt tokens (random), {args.output_len} output tokens "
        f"(ignore_eos), {args.prompts_per_stream} requests per stream per run, streams split "
        f"evenly over {len(paths['gateway'])} tenants (each its own LoRA adapter)",
    }
    for item in args.context:
        key, _, value = item.partition("=")
        context[key] = value
    if isinstance(client, BenchServeClient):
        lane_argv = client.argv(paths["gateway"][0], _workload(args, 64, 0), 32, 0)
        context["One lane's run at 64 streams"] = (
            "`vllm bench serve " + shlex.join(_redacted(lane_argv)) + "`"
        )
    return context


def _redacted(argv: list[str]) -> list[str]:
    """Keys stay out of the report."""
    hidden = []
    for item in argv:
        if item.startswith("Authorization="):
            item = "Authorization=Bearer <tenant key>"
        hidden.append(item)
    if "--admin-key" in hidden:
        hidden[hidden.index("--admin-key") + 1] = "<admin key>"
    return hidden


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
