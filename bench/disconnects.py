"""Gateway memory and file descriptors over many clients that hang up mid-stream.

    .venv/bin/python -m bench.disconnects                         # 100,000 disconnects
    .venv/bin/python -m bench.disconnects --disconnects 20000     # shorter

A stand-in pauses `--token-delay-ms` between tokens, so a stream is still running when its
client hangs up; the gateway takes its normal path (key auth, SQLite store, usage ledger,
metrics, access log). `--concurrency` clients send streams back to back: one in
`--normal-every` is read to its `[DONE]`, every other one is dropped (connection closed) as soon
as its first chunk is in, which makes the gateway close its upstream connection (vLLM aborts).
Every `--sample-every` disconnects the gateway's RSS (VmRSS) and open file descriptors are
sampled. Pass: after the first `--warmup` disconnects every RSS sample stays within 5% of the
first one after warm-up, open fds stay within 5% (+ the clients' connections) of it too, and
every normal stream is complete.

Writes bench/results/disconnects.md (or `--out`); exits 1 when a criterion is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import gateway_tenant, leaks, machine
from bench.processes import ServerProcess, free_port, running_server
from bench.servers import MODEL, set_token_delay, stop_on_sigterm

RESULTS_PATH = Path(__file__).with_name("results") / "disconnects.md"
RSS_BAND_PCT = 5.0


@dataclass(frozen=True)
class Sample(leaks.GatewaySample):
    disconnects: int
    normal_streams: int


@dataclass
class Load(leaks.FailureCounts):
    """Counters the clients update."""

    disconnects: int = 0
    normal_streams: int = 0


async def _load(gateway: ServerProcess, key: str, args: argparse.Namespace) -> list[Sample]:
    load = Load()
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    url = gateway.url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    normal_body = leaks.chat_body(16, stream=True)
    dropped_body = leaks.chat_body(200, stream=True)
    sent = 0

    def sample() -> None:
        figures = leaks.gateway_figures(time.monotonic() - started, gateway.process.pid)
        samples.append(Sample(*figures, load.disconnects, load.normal_streams))
        print(f"  {time.strftime('%H:%M:%S')}  {samples[-1]}  errors={load.errors}", flush=True)

    async def normal(session: aiohttp.ClientSession) -> None:
        async with session.post(url, data=normal_body, headers=headers) as response:
            body = await response.read()
            if response.status != 200 or not body.endswith(leaks.STREAM_END):
                load.fail(f"normal stream {response.status}: ends {body[-200:]!r}")
        load.normal_streams += 1

    async def dropped(session: aiohttp.ClientSession) -> None:
        response = await session.post(url, data=dropped_body, headers=headers)
        try:
            if response.status != 200 or not await response.content.readany():
                load.fail(f"dropped stream {response.status}: no first chunk")
        finally:
            response.close()  # hang up: the connection is closed, not given back to the pool
        load.disconnects += 1
        if load.disconnects % args.sample_every == 0:
            sample()

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while load.disconnects < args.disconnects and time.monotonic() < deadline:
            sent += 1
            try:
                await (normal if sent % args.normal_every == 0 else dropped)(session)
            except (aiohttp.ClientError, TimeoutError) as error:
                load.fail(f"{type(error).__name__}: {error}")

    sample()
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(args.concurrency)))
    await asyncio.sleep(2)  # after the load: what the gateway holds at rest
    sample()
    args.load = load
    return samples


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    stop_on_sigterm()
    with leaks.scratch_dir("disconnects") as workdir, ExitStack() as stack:
        standin = _start_standin(workdir, stack)
        set_token_delay(standin.url, args.token_delay_ms)
        gateway = _start_gateway(workdir, standin.url, stack)
        key = gateway_tenant.create_key(gateway.url, MODEL)
        samples = asyncio.run(_load(gateway, key, args))

    load: Load = args.load
    under_load = [s for s in samples[:-1] if s.disconnects >= args.warmup]
    verdicts = _verdicts(under_load, load, args) if under_load else []
    command = shlex.join([".venv/bin/python", "-m", "bench.disconnects", *argv])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_markdown(command, args, samples, load, verdicts))
    print("\n".join(map(leaks.verdict_line, verdicts)) or "no sample after the warm-up")
    return 0 if verdicts and all(passed for _, _, passed in verdicts) else 1


def _verdicts(
    under_load: list[Sample], load: Load, args: argparse.Namespace
) -> list[leaks.Verdict]:
    base = under_load[0]
    rss_low = min(s.rss_kib for s in under_load) / base.rss_kib * 100 - 100
    rss_high = max(s.rss_kib for s in under_load) / base.rss_kib * 100 - 100
    fd_high = max(s.open_fds for s in under_load)
    fd_bound = base.open_fds * (1 + RSS_BAND_PCT / 100) + args.concurrency
    return [
        (
            f"RSS within ±{RSS_BAND_PCT:g}% of {base.rss_kib:,} KiB after warm-up",
            f"{rss_low:+.1f}% .. {rss_high:+.1f}%",
            max(-rss_low, rss_high) <= RSS_BAND_PCT,
        ),
        (
            f"open fds at most {fd_bound:.0f} ({base.open_fds} after warm-up "
            f"+{RSS_BAND_PCT:g}% + {args.concurrency} client connections)",
            f"at most {fd_high}",
            fd_high <= fd_bound,
        ),
        (
            f"{args.disconnects:,} disconnects done",
            f"{load.disconnects:,}",
            load.disconnects >= args.disconnects,
        ),
        ("no failed request or incomplete normal stream", f"{load.errors} failed", not load.errors),
    ]


def _markdown(
    command: str,
    args: argparse.Namespace,
    samples: list[Sample],
    load: Load,
    verdicts: list[leaks.Verdict],
) -> str:
    lines = [
        "# Mid-stream client disconnects: gateway memory and file descriptors",
        "",
        *leaks.run_lines(command, machine.describe()),
        f"- Load: {args.concurrency} clients back to back; 1 stream in {args.normal_every} read "
        f"to [DONE] (16 tokens), the others dropped after their first chunk (200 tokens asked); "
        f"the stand-in pauses {args.token_delay_ms:g} ms between tokens",
        "- Gateway: key auth, SQLite store and usage ledger, metrics, access log, 1 worker",
        f"- Done: {load.disconnects:,} disconnects, {load.normal_streams:,} normal streams, "
        f"{load.errors} failed, in {samples[-1].elapsed_s:g} s",
        "",
        "| elapsed s | disconnects | normal streams | RSS KiB | open fds |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {s.elapsed_s:g} | {s.disconnects:,} | {s.normal_streams:,} | {s.rss_kib:,} "
            f"| {s.open_fds} |"
            for s in samples
        ),
        "",
        f"The first row is before the load, the last one 2 s after it. Warm-up: the first "
        f"{args.warmup:,} disconnects.",
        "",
        *leaks.criteria_lines(verdicts, load.failures),
        "",
    ]
    return "\n".join(lines)


def _start_standin(workdir: Path, stack: ExitStack) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--host", "127.0.0.1"]
    return stack.enter_context(
        running_server([*argv, "--port", str(port)], port, workdir / "standin.log")
    )


def _start_gateway(workdir: Path, upstream_url: str, stack: ExitStack) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1"]
    return stack.enter_context(
        running_server(
            [*argv, "--port", str(port), "--upstream", upstream_url],
            port,
            workdir / "gateway.log",
            ready_path="/healthz",
            env=gateway_tenant.environment(workdir),
        )
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.disconnects", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--disconnects", type=int, default=100_000, help="default 100,000")
    parser.add_argument(
        "--normal-every", type=int, default=5, help="1 stream in N is read whole (default 5)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="clients (default 32)")
    parser.add_argument(
        "--warmup", type=int, default=10_000, help="disconnects before the band applies"
    )
    parser.add_argument(
        "--sample-every", type=int, default=5_000, help="disconnects between two samples"
    )
    parser.add_argument(
        "--token-delay-ms", type=float, default=5.0, help="stand-in pause between tokens"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=15.0, help="stop the load after this, done or not"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="the report's path")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
