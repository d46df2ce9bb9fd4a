"""How evenly `vllm-gateway serve --workers N` spreads long streams over its workers.

    .venv/bin/python -m bench.worker_spread                    # 4 workers, 256 streams, 5 rounds
    .venv/bin/python -m bench.worker_spread --repo /tmp/old --label "git abc123"  # another one
    .venv/bin/python -m bench.worker_spread --model reuseport  # SO_REUSEPORT's hash, no gateway

A stand-in answers slow streams, so that all of them stay open at once. Each round opens
`--streams` streams, each on a connection of its own, waits until the gateway's workers hold
them all, and counts each worker's established connections on the gateway's port (from
/proc); then it closes them and waits until every worker holds none. The spread is each
worker's count against the mean (`--tolerance`: ±20%).

`--model reuseport` measures the alternative of one SO_REUSEPORT socket per worker without a
gateway: as many processes each accept on a socket of their own bound to one port, and each
trial counts where `--streams` connections land.

Results go to bench/results/worker_spread.{json,md} (`--out`), with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from pathlib import Path

import aiohttp

from bench import gateway_tenant, machine
from bench.processes import (
    ServerProcess,
    connections_per_worker,
    free_port,
    running_server,
    worker_pids,
)

RESULTS = Path(__file__).parent / "results"
MODEL = "base"
SETTLE_TIMEOUT_S = 60.0
MAX_TOKENS = 400  # the stand-in's max_model_len is 512: 80 s of tokens at 200 ms


async def hold_streams(
    url: str, key: str, streams: int, until: asyncio.Event, max_tokens: int
) -> None:
    """`streams` streams at once, each on its own connection, read until `until` is set."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "spread"}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    headers = {"authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=streams, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url, json=body, headers=headers) as response:
                response.raise_for_status()
                async for _ in response.content.iter_any():
                    if until.is_set():
                        return

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        await until.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def wait_for_total(pids: list[int], port: int, total: int) -> list[int]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while sum(counts := connections_per_worker(pids, port)) != total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers hold {counts}, not {total} connections in all")
        time.sleep(0.1)
    return counts


async def gateway_round(
    gateway: ServerProcess, port: int, key: str, args: argparse.Namespace
) -> list[int]:
    assert gateway.process.pid is not None
    pids = worker_pids(gateway.process.pid)
    if len(pids) != args.workers:
        raise RuntimeError(f"expected {args.workers} workers, found {pids}")
    done = asyncio.Event()
    holding = asyncio.create_task(
        hold_streams(gateway.url + "/v1/chat/completions", key, args.streams, done, MAX_TOKENS)
    )
    try:
        counts = await asyncio.to_thread(wait_for_total, pids, port, args.streams)
    finally:
        done.set()
        await holding
    await asyncio.to_thread(wait_for_total, pids, port, 0)
    return counts


@contextmanager
def running_gateway(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[ServerProcess, int]]:
    standin_port, port = free_port(), free_port()
    standin_argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--port", str(standin_port)]
    standin_argv += ["--itl-ms", str(args.itl_ms)]
    gateway_argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    gateway_argv += ["--workers", str(args.workers)]
    gateway_argv += ["--upstream", f"http://127.0.0.1:{standin_port}"]
    env = {**gateway_tenant.environment(workdir), "PYTHONPATH": str(args.repo)}
    with (
        running_server(standin_argv, standin_port, workdir / "standin.log"),
        running_server(
            gateway_argv, port, workdir / "gateway.log", "/healthz", env, 60.0, args.repo
        ) as gateway,
    ):
        # /healthz answers once one worker is up: wait for all, or the first takes everything
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while gateway.log().count("Application startup complete") < args.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every worker started:\n{gateway.log()}")
            time.sleep(0.1)
        yield gateway, port


def reuseport_accepter(port: int, index: int, ready: Event, stop: Event, counts: list[int]) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.settimeout(0.05)
    ready.set()
    held = []
    while not stop.is_set():
        try:
            held.append(listener.accept()[0])
        except TimeoutError:
            continue
        counts[index] = len(held)
    for connection in held:
        connection.close()


def reuseport_trial(workers: int, streams: int) -> list[int]:
    port = free_port()
    context = multiprocessing.get_context("spawn")
    counts = context.Array("i", workers)
    stop = context.Event()
    readies = [context.Event() for _ in range(workers)]
    processes = [
        context.Process(target=reuseport_accepter, args=(port, i, readies[i], stop, counts))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for ready in readies:
        ready.wait(30)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(streams)]
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while sum(counts[:]) != streams and time.monotonic() < deadline:
        time.sleep(0.01)
    landed = list(counts[:])
    stop.set()
    for process in processes:
        process.join(10)
    for client in clients:
        client.close()
    return landed


def deviation(counts: list[int]) -> float:
    """The largest distance of a worker's count from the mean, relative to the mean."""
    mean = sum(counts) / len(counts)
    return max(abs(count - mean) for count in counts) / mean


def markdown(report: dict[str, object], rounds: list[list[int]], tolerance: float) -> str:
    within = sum(deviation(counts) <= tolerance for counts in rounds)
    lines = [
        "# Streams spread over gateway workers",
        "",
        f"Re-run: `{report['command']}`",
        "",
        f"{report['what']}. Machine: {report['machine']}.",
        "",
        f"Within ±{tolerance:.0%} of the mean: **{within} of {len(rounds)}** rounds.",
        "",
        "| round | per worker | largest deviation from the mean |",
        "|---:|---|---:|",
    ]
    for number, counts in enumerate(rounds, 1):
        lines.append(f"| {number} | {', '.join(map(str, counts))} | {deviation(counts):.1%} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["gateway", "reuseport"], default="gateway")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="trials (reuseport: 100)")
    parser.add_argument("--itl-ms", type=float, default=200.0, help="the stand-in's token gap")
    parser.add_argument("--tolerance", type=float, default=0.2)
    parser.add_argument("--repo", type=Path, default=machine.REPO_ROOT, help="whose gateway")
    parser.add_argument("--label", default="this checkout", help="names --repo in the report")
    parser.add_argument("--out", type=Path, help="default: bench/results/worker_spread[-model]")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    rounds: list[list[int]] = []
    if args.model == "reuseport":
        trials = args.rounds if "--rounds" in sys.argv else 100
        for _ in range(trials):
            rounds.append(sorted(reuseport_trial(args.workers, args.streams)))
        what = (
            f"{args.streams} connections over {args.workers} processes, each accepting on a "
            "SO_REUSEPORT socket of its own bound to one port (no gateway)"
        )
        out = args.out or RESULTS / "worker_spread-reuseport"
    else:
        with (
            tempfile.TemporaryDirectory() as scratch,
            running_gateway(args, Path(scratch)) as (
                gateway,
                port,
            ),
        ):
            key = gateway_tenant.create_key(gateway.url, MODEL)
            for number in range(args.rounds):
                rounds.append(asyncio.run(gateway_round(gateway, port, key, args)))
                print(f"round {number + 1}: {rounds[-1]}", flush=True)
        what = (
            f"`vllm-gateway serve --workers {args.workers}` ({args.label}), {args.streams} "
            f"streams held open at once, each on its own connection, a stand-in sending a "
            f"token every {args.itl_ms:.0f} ms"
        )
        out = args.out or RESULTS / "worker_spread"
    report: dict[str, object] = {
        "command": "python -m bench.worker_spread " + shlex.join(sys.argv[1:]),
        "what": what,
        "machine": f"{os.cpu_count()} CPUs, {machine.describe()['cpu_model']}",
        "rounds": rounds,
        "max_deviation": [round(deviation(counts), 3) for counts in rounds],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report, rounds, args.tolerance))
    print(markdown(report, rounds, args.tolerance))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
