"""Routing benchmarks: the cost of one routing decision, and LoRA affinity against round-robin.

    .venv/bin/python -m bench.routing            # full run (about two minutes)
    .venv/bin/python -m bench.routing --quick    # smoke run (about a minute)

1. Decision: `Router.acquire` + `Lease.release` with 8 replicas and 100 registered adapters,
   no I/O (every adapter is loaded on some replica; replicas are full, so the costlier
   branches run: a scan for an unloadable idle adapter on every replica that lacks it).
   Median and p99 over many decisions; target: median <= 50 us.
2. Simulation: real stand-in replicas (`vllm-server standin`, each with `--max-loras` LoRA
   slots that make requests for a further adapter wait, as vLLM's scheduler does) and the
   gateway's router and hot-path transport in this process. More adapters are in use than
   one replica has slots. The same request sequence (uniform random adapter, fixed seed)
   runs once per policy: requests/s, completion latency, and the adapter loads and unloads
   the router made. Target: affinity beats round-robin on both.

Writes bench/results/routing.md and routing.json and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import machine
from bench.processes import ServerProcess, start_standin
from gateway.adapters.models import AdapterRecord
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.core.context import RequestContext
from gateway.replicas.replica import Replica
from gateway.routing import ModelTarget, Router
from gateway.settings import RoutingSettings, UpstreamSettings
from gateway.tenancy.models import ModelRoute
from gateway.upstream.client import UpstreamClient
from gateway.upstream.http import HttpTransport

RESULTS_DIR = Path(__file__).with_name("results")
DECISION_TARGET_US = 50.0


def target(adapter: str | None, base_model: str = "base") -> ModelTarget:
    """What the gateway routes a request for `adapter` (None: the base model) as."""
    return ModelTarget(adapter or base_model, ModelRoute(base_model, adapter))


@dataclass(frozen=True)
class Simulation:
    """More adapters in use than one replica has slots, but fewer than all replicas have."""

    replicas: int = 4
    slots: int = 4
    adapters: int = 12
    concurrency: int = 32
    itl_ms: float = 5.0
    requests: int = 2_000


@dataclass
class DecisionResult:
    replicas: int
    adapters: int
    decisions: int
    median_us: float
    p99_us: float


@dataclass
class PolicyResult:
    policy: str
    requests: int
    seconds: float
    requests_per_s: float
    median_latency_ms: float
    load_calls: int
    unload_calls: int


async def measure_decisions(replicas: int, adapters: int, decisions: int) -> DecisionResult:
    """Time acquire + release on a router whose state is set up in memory (never started)."""
    names = [f"adapter-{i:03d}" for i in range(adapters)]
    router = Router([f"http://10.0.0.{i}:8000" for i in range(replicas)], RoutingSettings())
    router.catalog.records = {name: AdapterRecord(name, f"/a/{name}", "base") for name in names}
    rng = random.Random(1)
    slots = -(-adapters // replicas)  # every adapter on one replica, every replica full
    pool = []
    for index in range(replicas):
        replica = Replica(f"http://10.0.0.{index}:8000", max_lora=slots)
        replica.base_models = frozenset({"base"})
        held = names[index::replicas]
        replica.adapters = OrderedDict((name, f"/a/{name}") for name in held)
        replica.running = frozenset(held[: slots // 2])
        replica.outstanding = rng.randrange(0, 8)
        replica.waiting = float(rng.randrange(0, 3))
        replica.kv_cache_usage = rng.random()
        pool.append(replica)
    router.pool.replicas = pool
    targets = [target(rng.choice(names)) for _ in range(decisions)]
    timings = []
    for request in targets:
        started = time.perf_counter_ns()
        lease = await router.acquire(request)
        timings.append(time.perf_counter_ns() - started)
        lease.release()
    timings.sort()
    return DecisionResult(
        replicas,
        adapters,
        decisions,
        median_us=timings[len(timings) // 2] / 1000,
        p99_us=timings[int(len(timings) * 0.99)] / 1000,
    )


async def simulate(
    policy: str,
    urls: list[str],
    adapters: list[str],
    registry_dir: Path,
    requests: int,
    concurrency: int,
) -> PolicyResult:
    """`requests` completions for seeded random adapters, `concurrency` at a time."""
    registry = SqliteAdapterRegistry(registry_dir / f"{policy}.db")
    for name in adapters:
        await registry.create(AdapterRecord(name, f"adapters/{name}", "base"))
    settings = RoutingSettings(policy=policy)  # type: ignore[arg-type]
    router = Router(urls, settings, registry)
    transport = HttpTransport(UpstreamSettings())
    upstream = UpstreamClient(transport, None)
    await router.start()
    await transport.start()
    rng = random.Random(7)
    sequence = [rng.choice(adapters) for _ in range(requests)]
    latencies: list[float] = []

    async def worker(mine: list[str]) -> None:
        for adapter in mine:
            body = (
                b'{"model": "%s", "prompt": "hello there", "max_tokens": 16, "ignore_eos": true}'
                % adapter.encode()
            )
            started = time.perf_counter()
            lease = await router.acquire(target(adapter))
            try:
                response = await lease.send(
                    lambda url, body=body: upstream.post(
                        RequestContext("bench"), url + "/v1/completions", body, False
                    )
                )
                await response.read()
                response.release()
                assert response.status == 200, response.status
            finally:
                lease.release()
            latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(sequence[i::concurrency]) for i in range(concurrency)))
        seconds = time.perf_counter() - started
    finally:
        await transport.close()
        await router.close()
        await registry.close()
    stats = router.loader.stats
    return PolicyResult(
        policy,
        requests,
        round(seconds, 2),
        requests_per_s=round(requests / seconds, 1),
        median_latency_ms=round(statistics.median(latencies) * 1000, 1),
        load_calls=stats.load_calls,
        unload_calls=stats.unload_calls,
    )


def start_replicas(log_dir: Path, setup: Simulation) -> list[ServerProcess]:
    args = ["--max-loras", str(setup.slots), "--ttft-ms", str(setup.itl_ms)]
    args += ["--itl-ms", str(setup.itl_ms)]
    return [start_standin(log_dir, *args) for _ in range(setup.replicas)]


def run_policy(policy: str, setup: Simulation, scratch: Path) -> PolicyResult:
    """On fresh replicas (nothing loaded), so that both policies start alike."""
    servers = start_replicas(scratch, setup)
    adapters = [f"sim-{i:02d}" for i in range(setup.adapters)]
    try:
        return asyncio.run(
            simulate(
                policy,
                [s.url for s in servers],
                adapters,
                scratch,
                setup.requests,
                setup.concurrency,
            )
        )
    finally:
        for server in servers:
            server.stop()


def report(
    decision: DecisionResult, policies: list[PolicyResult], setup: Simulation, command: str
) -> tuple[str, bool]:
    affinity, round_robin = policies
    decision_ok = decision.median_us <= DECISION_TARGET_US
    affinity_ok = (
        affinity.requests_per_s > round_robin.requests_per_s
        and affinity.load_calls < round_robin.load_calls
    )
    host = machine.describe()
    lines = [
        "# Routing benchmark",
        "",
        f"`{command}` on {host['nproc']} CPUs ({host['cpu_model']}), {host['date']}.",
        "",
        f"## Routing decision ({decision.replicas} replicas, {decision.adapters} adapters)",
        "",
        "| decisions | median | p99 | target |",
        "|---|---|---|---|",
        f"| {decision.decisions:,} | {decision.median_us:.1f} us | {decision.p99_us:.1f} us | "
        f"median <= {DECISION_TARGET_US:.0f} us: {'PASS' if decision_ok else 'FAIL'} |",
        "",
        f"## LoRA affinity vs round-robin ({setup.replicas} stand-in replicas x "
        f"{setup.slots} LoRA slots, {setup.adapters} adapters in use, "
        f"{setup.concurrency} requests in flight, 16 tokens each at {setup.itl_ms} ms)",
        "",
        "| policy | requests | requests/s | median latency | adapter loads | unloads |",
        "|---|---|---|---|---|---|",
    ]
    for result in policies:
        lines.append(
            f"| {result.policy} | {result.requests} | {result.requests_per_s} | "
            f"{result.median_latency_ms} ms | {result.load_calls} | {result.unload_calls} |"
        )
    verdict = "PASS" if affinity_ok else "FAIL"
    lines += ["", f"Affinity beats round-robin on throughput and loads: {verdict}"]
    return "\n".join(lines) + "\n", decision_ok and affinity_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions and requests")
    args = parser.parse_args(argv)
    setup = Simulation(requests=400 if args.quick else 2_000)
    decision = asyncio.run(measure_decisions(8, 100, 20_000 if args.quick else 200_000))
    print(f"decision: median {decision.median_us:.1f} us, p99 {decision.p99_us:.1f} us")
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as scratch:
        policies = [run_policy(p, setup, Path(scratch)) for p in ("affinity", "round_robin")]
    command = ".venv/bin/python -m bench.routing" + (" --quick" if args.quick else "")
    text, passed = report(decision, policies, setup, command)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "routing.md").write_text(text)
    results = {
        "setup": asdict(setup),
        "decision": asdict(decision),
        "policies": [asdict(p) for p in policies],
    }
    (RESULTS_DIR / "routing.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
