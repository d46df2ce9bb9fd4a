"""Benchmark our gateway against the upstream direct and LiteLLM's proxy, side by side.

    .venv/bin/python -m bench.run            # full run (about three minutes)
    .venv/bin/python -m bench.run --quick    # smoke run (about a minute)

One process tree on this machine: the harness starts a stand-in vLLM upstream, our gateway in
front of it and LiteLLM's proxy (its own venv, `.venv-litellm`, created on first use) in front
of the same upstream, all on free loopback ports, and stops them by PID at the end. Phases,
each over the three paths with the same chat-completion bodies (model "base"):

1. latency at concurrency 1: median and p99, and "added" = path minus direct;
2. requests/s at concurrency 16, non-streaming (16 tokens per answer), and the CPU seconds
   each path's own process tree spends per 1,000 of those requests;
3. 32 streams open at a time (`stream: true`, 64 tokens each), twice: "relay capacity", the
   stand-in not pausing between tokens, for chunks/s (how fast each path relays streams; with
   32 streams and a pause of d ms no path could exceed 32/d chunks per ms), then "paced", the
   stand-in pausing `--paced-delay-ms` (default 5) between tokens, about what vLLM on a GPU
   gives each stream under load, for TTFT (to the first chunk with content) and the gaps
   between tokens: without a pause TTFT on this small machine mostly measures the CPU
   contention that relaying 32 busy streams causes, not what a path adds for a real client;
4. the gateway's RSS (VmRSS of its process tree) at each checkpoint and over a long run of
   `--rss-requests` plain requests at concurrency 16 (default 100k), sampled in about ten parts.

The gateway serves a benchmark tenant whose API key every request carries (its normal path);
LiteLLM gets its master key, and the stand-in no key. Gateway settings beyond that:
`--gateway-arg` and `--gateway-env` (see bench/servers.py, GatewayOptions).
Every body sets vLLM's `ignore_eos`, so each answer is exactly max_tokens long on every path.
Plain requests use wrk (C, cheap on 2 cores) when installed, else an aiohttp client; streams use
an aiohttp client. The stand-in answers at once in every phase but the paced one.

Writes bench/results/latest.md, latest.json and latest.png, prints a PASS/FAIL line per target
and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import goals, litellm_peer, loadgen, machine, report
from bench.phases import BenchSettings, check_answers, run_all
from bench.processes import REPO_ROOT
from bench.servers import GatewayOptions, running_paths, stop_on_sigterm

RESULTS_DIR = Path(__file__).with_name("results")
_FULL_RSS_REQUESTS = 100_000
_QUICK_RSS_REQUESTS = 20_000


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    settings = _settings(args)
    gateway = GatewayOptions(extra_args=args.gateway_arg, env=dict(args.gateway_env))
    # SIGTERM would end the harness without unwinding; as SystemExit, `finally` stops children.
    stop_on_sigterm()

    context = {
        "command": shlex.join([_repo_relative(sys.executable), "-m", "bench.run", *argv]),
        "machine": machine.describe(),
        "versions": machine.versions(litellm_peer.ensure_installed(), loadgen.client_name()),
        "settings": {
            **vars(settings),
            "gateway_args": shlex.join(gateway.extra_args),
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    print(
        f"{time.strftime('%H:%M:%S')}  starting the three paths; server logs in {workdir}",
        flush=True,
    )
    try:
        with running_paths(workdir, settings.plain_tokens, gateway) as paths:
            check_answers(paths, settings)
            results = run_all(paths, settings)
    except BaseException:
        print(f"benchmark aborted; server logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir)

    verdicts = goals.evaluate(results)
    for path in report.write_all(args.out_dir, results, verdicts, context):
        print(f"wrote {_repo_relative(str(path))}")
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(verdict.passed for verdict in verdicts) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    parser.add_argument(
        "--rss-requests",
        type=int,
        help=f"requests in the RSS long run (default {_FULL_RSS_REQUESTS:,}, "
        f"{_QUICK_RSS_REQUESTS:,} with --quick)",
    )
    parser.add_argument(
        "--paced-delay-ms",
        type=float,
        default=5.0,
        help="stand-in pause between tokens in the paced streaming phase (default 5)",
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `gateway.cli serve` (repeatable; use --gateway-arg=--flag)",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="extra environment variable for the gateway (repeatable)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results go")
    return parser


def _settings(args: argparse.Namespace) -> BenchSettings:
    quick = args.quick
    default_rss = _QUICK_RSS_REQUESTS if quick else _FULL_RSS_REQUESTS
    return BenchSettings(
        latency_seconds=3 if quick else 10,
        throughput_seconds=3 if quick else 10,
        warmup_seconds=1 if quick else 2,
        throughput_concurrency=16,
        plain_tokens=16,
        streams=32,
        stream_tokens=64,
        stream_seconds=3 if quick else 10,
        paced_token_delay_ms=args.paced_delay_ms,
        rss_requests=args.rss_requests or default_rss,
        rss_samples=10,
    )


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _repo_relative(path: str) -> str:
    """Paths inside the repository are shown relative to it, so the command can be pasted."""
    absolute = Path(path).absolute()
    return str(absolute.relative_to(REPO_ROOT)) if absolute.is_relative_to(REPO_ROOT) else path


if __name__ == "__main__":
    raise SystemExit(main())
