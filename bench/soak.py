"""Soak the full pipeline: mixed streaming and plain load for minutes, watching for leaks.

    .venv/bin/python -m bench.soak                # 10 minutes
    .venv/bin/python -m bench.soak --minutes 2    # shorter

The gateway runs with everything on (bench/full_pipeline.py: key auth, Redis store and
limits, safety policy, LoRA routing over two stand-in replicas, metrics, access log). The
stand-ins pause `--token-delay-ms` between tokens, so streams stay open a while as they do in
front of a GPU. `--plain` workers send non-streaming requests back to back, `--streams` workers
keep streams open; every 10 s the gateway's RSS (VmRSS of its process tree) and open file
descriptors (/proc/PID/fd of the tree) are sampled. Pass: after the 1-minute warm-up neither
grows more than 10% (last sample against the first after warm-up), and no request fails.

Writes bench/results/soak.md, soak.json and soak.png; exits 1 when a criterion is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from matplotlib.figure import Figure

from bench import full_pipeline, leaks, machine
from bench.servers import Target, set_token_delay, stop_on_sigterm

RESULTS_DIR = Path(__file__).with_name("results")
SAMPLE_EVERY_S = 10.0
WARMUP_S = 60.0
GROWTH_LIMIT_PCT = 10.0


@dataclass(frozen=True)
class Sample(leaks.GatewaySample):
    requests: int
    streams: int


@dataclass
class SoakLoad(leaks.FailureCounts):
    """Counters the workers update."""

    requests: int = 0
    streams: int = 0


def growth_pct(samples: list[Sample], metric: str) -> float:
    after_warmup = [sample for sample in samples if sample.elapsed_s >= WARMUP_S]
    base, last = getattr(after_warmup[0], metric), getattr(after_warmup[-1], metric)
    return (last - base) / base * 100


async def _soak(target: Target, args: argparse.Namespace) -> tuple[list[Sample], SoakLoad]:
    load = SoakLoad()
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    headers = target.headers()
    plain_body = leaks.chat_body(16, stream=False)
    stream_body = leaks.chat_body(64, stream=True)

    def sample(elapsed: float) -> Sample:
        return Sample(*leaks.gateway_figures(elapsed, target.pid), load.requests, load.streams)

    async def plain_worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                async with session.post(target.chat_url, data=plain_body, headers=headers) as r:
                    text = await r.read()
                    if r.status != 200:
                        load.fail(f"plain {r.status}: {text[:200]!r}")
                    load.requests += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                load.fail(f"plain {type(error).__name__}: {error}")

    async def stream_worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                async with session.post(target.chat_url, data=stream_body, headers=headers) as r:
                    text = await r.read()
                    if r.status != 200 or not text.endswith(leaks.STREAM_END):
                        load.fail(f"stream {r.status}: ends {text[-200:]!r}")
                    load.streams += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                load.fail(f"stream {type(error).__name__}: {error}")

    async def sampler() -> None:
        while True:
            elapsed = time.monotonic() - started
            samples.append(sample(elapsed))
            print(
                f"  {time.strftime('%H:%M:%S')}  {asdict(samples[-1])}  errors={load.errors}",
                flush=True,
            )
            if elapsed >= args.minutes * 60:
                return
            await asyncio.sleep(min(SAMPLE_EVERY_S, max(0.0, deadline - time.monotonic())))

    connector = aiohttp.TCPConnector(limit=args.plain + args.streams)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workers = [plain_worker(session) for _ in range(args.plain)]
        workers += [stream_worker(session) for _ in range(args.streams)]
        await asyncio.gather(sampler(), *workers)
    # After the load: the sample that shows whether idle connections and buffers were freed.
    samples.append(sample(time.monotonic() - started))
    return samples, load


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.minutes * 60 <= WARMUP_S:
        raise SystemExit("--minutes must be longer than the 1-minute warm-up")
    stop_on_sigterm()
    with leaks.scratch_dir("soak") as workdir, ExitStack() as stack:
        first = full_pipeline.standin(workdir, "standin-a", 16, stack)
        second = full_pipeline.standin(workdir, "standin-b", 16, stack)
        for upstream in (first, second):
            set_token_delay(upstream.url, args.token_delay_ms)
        with full_pipeline.running_full(workdir, first.url, second.url) as full:
            samples, load = asyncio.run(_soak(full.target, args))

    under_load = samples[:-1]  # the last sample is taken after the load stopped
    rss_growth, fd_growth = growth_pct(under_load, "rss_kib"), growth_pct(under_load, "open_fds")
    verdicts = [
        (
            f"RSS growth after warm-up < {GROWTH_LIMIT_PCT:g}%",
            f"{rss_growth:+.1f}%",
            rss_growth < GROWTH_LIMIT_PCT,
        ),
        (
            f"open fd growth after warm-up < {GROWTH_LIMIT_PCT:g}%",
            f"{fd_growth:+.1f}%",
            fd_growth < GROWTH_LIMIT_PCT,
        ),
        ("no failed requests or incomplete streams", f"{load.errors} failed", load.errors == 0),
    ]
    context = {
        "command": shlex.join([".venv/bin/python", "-m", "bench.soak", *argv]),
        "machine": machine.describe(),
        "settings": {**vars(args), "out_dir": str(args.out_dir)}
        | {"sample_every_s": SAMPLE_EVERY_S, "warmup_s": WARMUP_S},
        "pipeline": {
            "safety_admin_reply": full.safety_admin_reply,
            "safety_enforced": full.safety_enforced,
        },
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    raw = {
        **context,
        "load": asdict(load),
        "samples": [asdict(sample) for sample in samples],
        "rss_growth_pct": rss_growth,
        "fd_growth_pct": fd_growth,
        "verdicts": [{"name": n, "observed": o, "passed": p} for n, o, p in verdicts],
    }
    (args.out_dir / "soak.json").write_text(json.dumps(raw, indent=2) + "\n")
    _plot(samples, args.out_dir / "soak.png", rss_growth, fd_growth)
    (args.out_dir / "soak.md").write_text(_markdown(context, samples, load, verdicts))
    print("\n".join(map(leaks.verdict_line, verdicts)))
    return 0 if all(passed for _, _, passed in verdicts) else 1


def _markdown(
    context: dict, samples: list[Sample], load: SoakLoad, verdicts: list[leaks.Verdict]
) -> str:
    m, s, p = context["machine"], context["settings"], context["pipeline"]
    safety = full_pipeline.safety_status(p["safety_enforced"], p["safety_admin_reply"])
    lines = [
        "# Soak: full pipeline, mixed streaming and plain load",
        "",
        *leaks.run_lines(context["command"], m),
        f"- Load: {s['plain']} plain workers (16 tokens) + {s['streams']} stream workers "
        f"(64 tokens), back to back for {s['minutes']:g} min; stand-ins pause "
        f"{s['token_delay_ms']:g} ms between tokens",
        "- Gateway: key auth, Redis store and limits (generous, never hit), LoRA routing over 2 "
        f"stand-in replicas, metrics, access log; safety policy: {safety}",
        f"- Done: {load.requests:,} plain requests, {load.streams:,} streams, {load.errors} failed",
        "",
        "| elapsed s | RSS KiB | open fds | plain requests | streams |",
        "|---|---|---|---|---|",
        *(
            f"| {x.elapsed_s:g} | {x.rss_kib:,} | {x.open_fds} | {x.requests:,} | {x.streams:,} |"
            for x in samples
        ),
        "",
        "The last row is taken after the load stopped. Growth: the last sample during the load "
        "against the first one at or after 60 s.",
        "",
        *leaks.criteria_lines(verdicts, load.failures),
        "",
        "![gateway RSS and open file descriptors over the soak](soak.png)",
        "",
    ]
    return "\n".join(lines)


def _plot(samples: list[Sample], path: Path, rss_growth: float, fd_growth: float) -> None:
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    rss_axis, fd_axis = figure.subplots(1, 2)
    seconds = [sample.elapsed_s for sample in samples]
    rss_axis.plot(seconds, [sample.rss_kib / 1024 for sample in samples], marker="o")
    rss_axis.set_title(f"gateway RSS (growth after warm-up {rss_growth:+.1f}%)")
    rss_axis.set_ylabel("MiB")
    rss_axis.set_ylim(0, max(sample.rss_kib for sample in samples) / 1024 * 1.15)
    fd_axis.plot(seconds, [sample.open_fds for sample in samples], marker="o", color="#2ca02c")
    fd_axis.set_title(f"gateway open file descriptors (growth after warm-up {fd_growth:+.1f}%)")
    fd_axis.set_ylim(0, max(sample.open_fds for sample in samples) * 1.15)
    for axis in (rss_axis, fd_axis):
        axis.axvline(WARMUP_S, color="#7f7f7f", linestyle="--", label="end of warm-up")
        axis.set_xlabel("seconds")
        axis.legend(loc="lower right")
    figure.savefig(path, dpi=100)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    parser.add_argument("--plain", type=int, default=8, help="plain-request workers (default 8)")
    parser.add_argument("--streams", type=int, default=16, help="stream workers (default 16)")
    parser.add_argument(
        "--token-delay-ms", type=float, default=5.0, help="stand-in pause between tokens"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results go")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
