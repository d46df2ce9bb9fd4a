"""Fair queuing under overload: does one noisy tenant raise the others' time to first token?

    .venv/bin/python -m bench.fairness              # about 2 minutes; writes bench/results/

A real stand-in process (`vllm-server standin`) answers streamed completions after a fixed
time to first token and inter-token gap, with 1 to `--max-tokens` tokens (drawn per request:
varied lengths, as real answers have, keep slots from all freeing in lockstep). The stand-in
itself has no capacity limit, so the
budget `--budget` plays vLLM's batch (`--max-num-seqs`): at most that many requests are at
the stand-in at once, and the rest wait. Three runs share one arrival schedule per tenant
(Poisson, seeded, open loop: a slow answer does not slow the arrivals):

- no noise: the three quiet tenants alone;
- noise, first come first served: plus one tenant sending `--noise-factor` times the
  traffic of each quiet one, everyone in one queue, as vLLM's own waiting queue serves them;
- noise, fair queue: the same traffic through the gateway's FairQueue, one queue per tenant,
  with its reserve for tenants below their fair share (`--reserved-share`, `--active-window`;
  defaults: the gateway's). The first-come-first-served run is a FairQueue with one lane for
  everyone: a lone lane's share is the whole budget, so there the reserve never applies.

`--processes 2 4` measures the queueing rule alone, without the stand-in, HTTP or the gateways'
work on the machine's cores (whose noise decides a p99 on 2 shared cores): simulated requests
hold their slot for the stand-in's timing and send nothing, in virtual time (the clock jumps to
the next timer), so the figures are the same on every run and on any machine. A no-noise and a
noise run with one queue, then, per process count, noise runs with the budget kept as that
many gateway processes keep it, all in this one (each request in a process drawn at random,
seeded, as connections land on workers): each its part of the open slots, under the rule
before this pool (each process a reserve of its own part, a tenant's holdings as they are at
the moment), its parts alone, and the rule now (one reserve lent, gateway/isolation/reserve.py
through the workers' file, grown by `--reserve-per-extra-process` slots per process beyond
the first; holdings averaged over `--holding-window`). Each simulated run pools
`--simulation-seeds` arrival schedules; simulated runs are compared with the simulated
no-noise run.

`--through-gateways 1x4 2x1` adds, per shape, a no-noise and a noise run through real
gateway processes (INSTANCES x WORKERS, on the Redis at 127.0.0.1:6379) with their fair queue
on: the budget is then the deployment's, each process keeping its share (gateway/peers.py),
and the requests of every tenant are spread over the instances (and, by the gateway, over the
workers), as a load balancer would.

`--schedules N` pools each real run over N arrival schedules (seed, seed+1, ...): one
schedule's slowest 1% is 7 quiet requests, so its p99 is decided by its largest burst (seed 1:
36 quiet requests in half a second); each schedule's own p99 is reported beside the pooled
one. `--baseline-only` skips the in-process noise runs, keeping the baseline.

TTFT is timed from each request's scheduled arrival (queueing included) to its first
streamed event; requests arriving in the first `--warmup` seconds are not counted, so the
noisy runs are measured once the overload has built up. Requests still waiting after
`--queue-timeout` are refused (429) and counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TypeVar
from unittest import mock

import aiohttp

from bench.gateway_process import ACME_MODELS, Gateway, start_gateway
from bench.processes import free_port, running_server
from bench.redis_server import delete_prefixed_keys
from gateway.core.errors import GatewayError
from gateway.isolation.fair_queue import FairQueue, reserved_slots
from gateway.isolation.reserve import FileReserve, LocalReserve
from gateway.peers import ANNOUNCE_INTERVAL_S
from gateway.settings import FairQueueSettings

QUIET = ("quiet-1", "quiet-2", "quiet-3")
NOISY = "noisy"
FIFO_LANE = "everyone"
SIMULATED_BASELINE = "no noise, simulated"
RESULTS = Path(__file__).parent / "results"
REDIS_URL = "redis://127.0.0.1:6379"
T = TypeVar("T")
Route = tuple[str, dict[str, str]]  # a request's URL and headers
Routes = Callable[[str, int], Route]


@dataclass(frozen=True)
class Load:
    budget: int
    ttft_ms: float
    itl_ms: float
    max_tokens: int
    quiet_rps: float
    noise_factor: float
    duration_s: float
    warmup_s: float
    queue_timeout_s: float
    reserved_share: float
    reserve_per_extra_process: int
    active_window_s: float
    holding_window_s: float
    seed: int

    @property
    def service_s(self) -> float:
        """How long a request holds its slot, on average."""
        mean_tokens = (1 + self.max_tokens) / 2
        return (self.ttft_ms + (mean_tokens - 1) * self.itl_ms) / 1000

    @property
    def capacity_rps(self) -> float:
        return self.budget / self.service_s


@dataclass(frozen=True)
class Outcome:
    tenant: str
    arrival_s: float  # since the run started
    ttft_s: float | None  # None: refused after waiting past the queue timeout
    # through a gateway: its x-gateway-overhead-ms, its own time before the upstream's first
    # byte, the fair queue's wait included
    gateway_ms: float | None = None


def arrivals(load: Load, tenants: list[str]) -> list[tuple[float, str, int]]:
    """(offset, tenant, tokens) per request; a tenant's requests are the same in every run."""
    schedule = []
    for index, tenant in enumerate([*QUIET, NOISY]):
        if tenant not in tenants:
            continue
        rate = load.quiet_rps * (load.noise_factor if tenant == NOISY else 1)
        dice = random.Random(load.seed * 100 + index)
        offset = dice.expovariate(rate)
        while offset < load.duration_s:
            schedule.append((offset, tenant, dice.randint(1, load.max_tokens)))
            offset += dice.expovariate(rate)
    return sorted(schedule)


async def one_request(
    session: aiohttp.ClientSession,
    route: Route,
    slot: AbstractAsyncContextManager[object],
    tenant: str,
    arrival: float,
    started: float,
    max_tokens: int,
) -> Outcome:
    loop = asyncio.get_running_loop()
    body = {
        "model": "base",
        "prompt": "def main():",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }
    url, headers = route
    ttft = None
    overhead = None
    try:
        async with slot, session.post(url, json=body, headers=headers) as response:
            if response.status != 200:  # the gateway's queue timeout: 429
                await response.read()
                return Outcome(tenant, arrival - started, None)
            overhead = response.headers.get("x-gateway-overhead-ms")
            async for line in response.content:
                if ttft is None and line.startswith(b"data:"):
                    ttft = loop.time() - arrival
    except GatewayError:
        pass
    gateway_ms = float(overhead) if ttft is not None and overhead else None
    return Outcome(tenant, arrival - started, ttft, gateway_ms)


def fair_queues(
    load: Load,
    processes: int = 1,
    lend: bool = True,
    holding_window_s: float | None = None,
    grow: bool = True,
) -> list[FairQueue]:
    """The budget as `processes` gateway processes keep it, here in one: each its part, and
    the reserve lent from one pool (`lend`, through the file the workers of an instance
    share; `grow`: by the load's slots per process beyond the first) or divided, each process
    keeping a reserve of its own part (as before the pool). `holding_window_s`: instead of
    the load's."""
    path = Path(tempfile.mkdtemp(prefix="bench-fairness-")) / "reserve"
    path.touch()
    queues = []
    for rank in range(processes):
        pool = FileReserve(str(path), rank, processes) if lend else LocalReserve()
        queue = FairQueue(
            load.budget,
            load.queue_timeout_s,
            reserved_share=load.reserved_share,
            active_window_s=load.active_window_s,
            holding_window_s=holding_window_s or load.holding_window_s,
            reserve_per_extra_process=load.reserve_per_extra_process if grow else 0,
            reserve=pool,
        )
        queue.divide(processes, rank)
        queues.append(queue)
    return queues


async def simulated_request(
    slot: AbstractAsyncContextManager[object],
    tenant: str,
    arrival: float,
    started: float,
    tokens: int,
    load: Load,
) -> Outcome:
    """A request to an upstream that is only its timing: the slot held for the stand-in's
    time to first token and the tokens after it, nothing sent."""
    loop = asyncio.get_running_loop()
    try:
        async with slot:
            await asyncio.sleep(load.ttft_ms / 1000)
            ttft = loop.time() - arrival
            await asyncio.sleep((tokens - 1) * load.itl_ms / 1000)
    except GatewayError:
        return Outcome(tenant, arrival - started, None)
    return Outcome(tenant, arrival - started, ttft)


def run_in_virtual_time(main: Coroutine[object, object, T]) -> T:
    """Run `main` on an event loop whose clock jumps to its next timer whenever nothing is
    ready: the simulated runs take no wall time and no core's attention, so they come out
    the same on a busy machine as on an idle one (and the same on every run). Only for code
    that waits on timers alone, never on I/O; `time.monotonic` reads the same clock (the fair
    queue's active window)."""
    now = 0.0
    loop = asyncio.new_event_loop()
    select = loop._selector.select  # type: ignore[attr-defined]

    def jump(timeout: float | None) -> list[object]:
        nonlocal now
        if timeout is None:
            raise RuntimeError("a virtual-time run waited on I/O")
        now += timeout
        return list(select(0))

    loop.time = lambda: now  # type: ignore[method-assign]
    loop._selector.select = jump  # type: ignore[attr-defined]
    try:
        with mock.patch("time.monotonic", lambda: now):
            return loop.run_until_complete(main)
    finally:
        loop.close()


async def run(
    routes: Routes | None,
    load: Load,
    tenants: list[str],
    fair: bool,
    queues: list[FairQueue] | None,
) -> list[Outcome]:
    """`routes(tenant, n)`: where the n-th request goes (None: nowhere, `simulated_request`).
    `queues`: the budget kept in this process, each request queueing in one of them drawn at
    random (with one lane for everyone unless `fair`); None: the gateways behind the routes
    queue."""
    loop = asyncio.get_running_loop()
    dice = random.Random(load.seed)
    async with contextlib.AsyncExitStack() as stack:
        session = None
        if routes is not None:
            connector = aiohttp.TCPConnector(limit=0)
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        started = loop.time() + 0.2
        tasks = []
        for number, (offset, tenant, tokens) in enumerate(arrivals(load, tenants)):
            arrival = started + offset
            delay = arrival - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lane = tenant if fair else FIFO_LANE
            slot: AbstractAsyncContextManager[object] = (
                queues[dice.randrange(len(queues))].slot(lane)
                if queues
                else contextlib.nullcontext()
            )
            if session is None or routes is None:
                request = simulated_request(slot, tenant, arrival, started, tokens, load)
            else:
                route = routes(tenant, number)
                request = one_request(session, route, slot, tenant, arrival, started, tokens)
            tasks.append(asyncio.create_task(request))
        return list(await asyncio.gather(*tasks))


@contextlib.contextmanager
def gateway_routes(upstream: str, load: Load, instances: int, workers: int) -> Iterator[Routes]:
    """`instances` gateway processes of `workers` workers each, their fair queue on with the
    load's budget as the deployment's, on one Redis (keys, limits and the count of
    processes); each tenant's key; routes sending request n to instance n modulo the count."""
    prefix = f"bench-fairness-{uuid.uuid4().hex[:8]}:"
    settings = {
        "server__workers": str(workers),
        "store__redis_url": REDIS_URL,
        "store__redis_prefix": prefix,
        "auth__key_hash_secret": "bench-fairness-shared-secret",
        "isolation__fair_queue__enabled": "true",
        "isolation__fair_queue__max_in_flight": str(load.budget),
        "isolation__fair_queue__queue_timeout_s": str(load.queue_timeout_s),
        "isolation__fair_queue__reserved_share": str(load.reserved_share),
        "isolation__fair_queue__reserve_per_extra_process": str(load.reserve_per_extra_process),
        "isolation__fair_queue__active_window_s": str(load.active_window_s),
        "isolation__fair_queue__holding_window_s": str(load.holding_window_s),
        "observability__access_log": "false",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fairness-"))
    gateways: list[Gateway] = []
    try:
        for index in range(instances):
            gateways.append(start_gateway(upstream, log_dir, tenant=f"setup-{index}", **settings))
        keys = {
            tenant: gateways[0].new_tenant(f"{tenant}-{uuid.uuid4().hex[:6]}", ACME_MODELS)[1]
            for tenant in [*QUIET, NOISY]
        }
        time.sleep(2 * ANNOUNCE_INTERVAL_S)  # every process has counted the others

        def routes(tenant: str, number: int) -> Route:
            gateway = gateways[number % len(gateways)]
            return gateway.url + "/v1/completions", {"authorization": f"Bearer {keys[tenant]}"}

        yield routes
    finally:
        for gateway in gateways:
            gateway.stop()
        asyncio.run(delete_prefixed_keys(REDIS_URL, prefix))


# The fair queue's rule before this pool, and its parts: (reserve lent, holdings averaged,
# the lent reserve grown per process).
RULES = {
    "reserve divided, holdings as they are (the rule before)": (False, False, False),
    "one reserve lent, holdings as they are": (True, False, False),
    "reserve divided, holdings averaged": (False, True, False),
    "one reserve lent, holdings averaged": (True, True, False),
    "one reserve lent and grown, holdings averaged (the rule now)": (True, True, True),
}
NOW_S = 1e-9  # a holding window this short: what a tenant holds is what it holds now


@dataclass
class Report:
    """Each run's figures, and each schedule's quiet p99 where a run pooled several."""

    runs: dict[str, dict[str, float | int]] = field(default_factory=dict)
    by_schedule: dict[str, list[float]] = field(default_factory=dict)

    def measure(
        self, name: str, load: Load, seeds: int, run_one: Callable[[Load], list[Outcome]]
    ) -> None:
        schedules = over_schedules(load, seeds, run_one)
        self.runs[name] = summarize(schedules, load)
        if len(schedules) > 1:
            p99s = [summarize([one], load)["quiet_ttft_p99_ms"] for one in schedules]
            self.by_schedule[name] = p99s
        print(name, self.runs[name], self.by_schedule.get(name, ""), flush=True)


def simulated_runs(load: Load, process_counts: list[int], seeds: int, report: Report) -> None:
    """The simulated runs, each over `seeds` arrival schedules (the load's seed and the next
    ones), their requests pooled: one p99 over several times as many quiet requests."""
    plans: dict[str, tuple[list[str], int, bool, float | None, bool]] = {
        SIMULATED_BASELINE: (list(QUIET), 1, True, None, True),
        "noise, fair queue, simulated": ([*QUIET, NOISY], 1, True, None, True),
    }
    for processes in process_counts:
        for how, (lend, averaged, grow) in RULES.items():
            name = f"noise, fair queue in {processes} processes, simulated, {how}"
            window = None if averaged else NOW_S
            plans[name] = ([*QUIET, NOISY], processes, lend, window, grow)
    for name, (tenants, processes, lend, window, grow) in plans.items():
        simulated = partial(simulated_run, tenants, processes, lend, window, grow)
        report.measure(name, load, seeds, simulated)


def simulated_run(
    tenants: list[str],
    processes: int,
    lend: bool,
    holding_window_s: float | None,
    grow: bool,
    schedule: Load,
) -> list[Outcome]:
    queues = fair_queues(schedule, processes, lend, holding_window_s, grow)
    return run_in_virtual_time(run(None, schedule, tenants, True, queues))


def real_run(
    routes: Routes, tenants: list[str], fair: bool, in_process: bool, schedule: Load
) -> list[Outcome]:
    """One run over the stand-in, queueing in this process (`in_process`) or in the gateways
    behind `routes`."""
    queues = fair_queues(schedule) if in_process else None
    return asyncio.run(run(routes, schedule, tenants, fair, queues))


def over_schedules(
    load: Load, seeds: int, run_one: Callable[[Load], list[Outcome]]
) -> list[list[Outcome]]:
    """`run_one` over `seeds` arrival schedules (the load's seed and the next ones): each
    schedule's outcomes."""
    return [run_one(replace(load, seed=seed)) for seed in range(load.seed, load.seed + seeds)]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with `share` of all at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def summarize(schedules: list[list[Outcome]], load: Load) -> dict[str, float | int]:
    """The figures of the load's runs over `schedules` (rates per run), their outcomes
    pooled: one p99 over all their quiet requests."""
    counted = [o for outcomes in schedules for o in outcomes if o.arrival_s >= load.warmup_s]
    quiet = [o for o in counted if o.tenant in QUIET]
    quiet_ttft = [o.ttft_s for o in quiet if o.ttft_s is not None]
    noisy = [o for o in counted if o.tenant == NOISY]
    measured_s = (load.duration_s - load.warmup_s) * len(schedules)
    served = sorted((o for o in quiet if o.ttft_s is not None), key=lambda o: o.ttft_s or 0.0)
    slowest = served[-max(1, len(served) // 100) :]
    in_gateway = [o.gateway_ms for o in slowest if o.gateway_ms is not None]
    figures: dict[str, float | int] = {
        "quiet_requests": len(quiet),
        "quiet_ttft_p50_ms": round(percentile(quiet_ttft, 0.50) * 1000, 1),
        "quiet_ttft_p99_ms": round(percentile(quiet_ttft, 0.99) * 1000, 1),
        "quiet_refused": len(quiet) - len(quiet_ttft),
        "noisy_requests": len(noisy),
        "noisy_served_rps": round(sum(o.ttft_s is not None for o in noisy) / measured_s, 1),
        "noisy_refused": sum(o.ttft_s is None for o in noisy),
    }
    if in_gateway:
        # where the quiet tail is: the gateway's own time (its fair queue's wait included)
        # of the slowest 1% of quiet requests, on average
        figures["quiet_slowest_gateway_ms"] = round(sum(in_gateway) / len(in_gateway), 1)
    return figures


def baseline_of(name: str) -> str:
    """The no-noise run a run is compared with: the simulated runs with the simulated one."""
    return SIMULATED_BASELINE if "simulated" in name else "no noise"


def markdown(load: Load, report: Report, command: str) -> str:
    runs, by_schedule = report.runs, report.by_schedule
    offered = load.quiet_rps * (len(QUIET) + load.noise_factor)
    lines = [
        "# Fair queuing under overload",
        "",
        f"Re-run: `{command}`",
        "",
        f"Stand-in: TTFT {load.ttft_ms:g} ms, then 1 to {load.max_tokens} tokens (uniform) "
        f"{load.itl_ms:g} ms apart (a request holds its slot {load.service_s * 1000:.0f} ms on "
        f"average); budget {load.budget} in "
        f"flight, so capacity {load.capacity_rps:.0f} req/s. Quiet tenants: {len(QUIET)} x "
        f"{load.quiet_rps:g} req/s; noisy tenant: {load.noise_factor:g}x that, "
        f"{load.quiet_rps * load.noise_factor:g} req/s; offered with noise {offered:g} req/s "
        f"({offered / load.capacity_rps:.2f}x capacity). {load.duration_s:g} s of Poisson "
        f"arrivals per run, the first {load.warmup_s:g} s not counted; queue timeout "
        f"{load.queue_timeout_s:g} s. Fair queue reserve: "
        f"{reserved_slots(load.budget, load.reserved_share)} of the {load.budget} slots "
        f"(reserved_share {load.reserved_share:g}), lent from one pool that grows by "
        f"{load.reserve_per_extra_process} per process beyond the first; active window "
        f"{load.active_window_s:g} s, "
        f"holding window {load.holding_window_s:g} s.",
        "",
        "| run | quiet TTFT p50 (ms) | quiet TTFT p99 (ms) | p99 vs no noise | quiet refused "
        "| noisy served (req/s) | noisy refused | slowest 1% of quiet: in the gateway (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in runs.items():
        change = (row["quiet_ttft_p99_ms"] / runs[baseline_of(name)]["quiet_ttft_p99_ms"] - 1) * 100
        lines.append(
            f"| {name} | {row['quiet_ttft_p50_ms']} | {row['quiet_ttft_p99_ms']} | "
            f"{change:+.0f}% | {row['quiet_refused']} of {row['quiet_requests']} | "
            f"{row['noisy_served_rps']} | {row['noisy_refused']} of {row['noisy_requests']} | "
            f"{_or_dash(row.get('quiet_slowest_gateway_ms'))} |"
        )
    lines += [
        "",
        "In the gateway: the mean of the slowest 1% of quiet requests' `x-gateway-overhead-ms` "
        "(the gateway's own time before the upstream answered, its fair queue's wait "
        "included); the rest of their TTFT is the stand-in's 500 ms and the hops.",
    ]
    if by_schedule:
        lines += [
            "",
            f"The runs that pool several arrival schedules (seeds {load.seed} on): quiet TTFT "
            "p99 (ms) of each schedule alone, and vs no noise on the same schedule:",
            "",
        ]
        for name, p99s in by_schedule.items():
            baseline = by_schedule.get(baseline_of(name), p99s)
            changes = ", ".join(
                f"{p99:g} ({(p99 / base - 1) * 100:+.0f}%)"
                for p99, base in zip(p99s, baseline, strict=True)
            )
            lines.append(f"- {name}: {changes}")
    return "\n".join(lines) + "\n"


def _or_dash(value: float | int | None) -> str:
    return "-" if value is None else f"{value}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=64, help="requests in flight at once")
    parser.add_argument("--ttft-ms", type=float, default=500.0)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=24, help="tokens: 1 to this")
    parser.add_argument("--quiet-rps", type=float, default=9.0, help="per quiet tenant")
    parser.add_argument("--noise-factor", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds not counted")
    parser.add_argument("--queue-timeout", type=float, default=5.0)
    defaults = FairQueueSettings()
    parser.add_argument("--reserved-share", type=float, default=defaults.reserved_share)
    parser.add_argument(
        "--reserve-per-extra-process", type=int, default=defaults.reserve_per_extra_process
    )
    parser.add_argument("--active-window", type=float, default=defaults.active_window_s)
    parser.add_argument("--holding-window", type=float, default=defaults.holding_window_s)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--through-gateways",
        type=_instances_by_workers,
        nargs="*",
        default=[],
        metavar="INSTANCESxWORKERS",
        help="also run the fair queue in real gateway processes, e.g. 1x4 2x1 (on the Redis "
        "at 127.0.0.1:6379, which counts the processes: the budget is divided between them)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also simulate the rule (no upstream) with one queue and with the budget kept as "
        "N gateway processes would, in this one, the reserve divided and one reserve lent",
    )
    parser.add_argument(
        "--simulation-seeds",
        type=int,
        default=5,
        metavar="N",
        help="arrival schedules per simulated run (seed, seed+1, ...), their requests pooled",
    )
    parser.add_argument(
        "--schedules",
        type=int,
        default=1,
        metavar="N",
        help="arrival schedules per real run (seed, seed+1, ...), their requests pooled: a "
        "p99 over N times as many quiet requests (one schedule's slowest 1%% is 7 requests)",
    )
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="of the runs queueing in this process, only no noise (the others' baseline)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fairness")
    return parser.parse_args()


def _instances_by_workers(text: str) -> tuple[int, int]:
    instances, _, workers = text.partition("x")
    return int(instances), int(workers or 1)


def main() -> int:
    args = parse_args()
    load = Load(
        args.budget,
        args.ttft_ms,
        args.itl_ms,
        args.max_tokens,
        args.quiet_rps,
        args.noise_factor,
        args.duration,
        args.warmup,
        args.queue_timeout,
        args.reserved_share,
        args.reserve_per_extra_process,
        args.active_window,
        args.holding_window,
        args.seed,
    )
    port = free_port()
    argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--port", str(port)]
    argv += ["--ttft-ms", str(load.ttft_ms), "--itl-ms", str(load.itl_ms)]
    log_path = Path(tempfile.gettempdir()) / f"fairness-standin-{port}.log"
    plans = {
        "no noise": (list(QUIET), False),
        "noise, first come first served": ([*QUIET, NOISY], False),
        "noise, fair queue": ([*QUIET, NOISY], True),
    }
    report = Report()
    with running_server(argv, port, log_path) as standin:
        url = f"{standin.url}/v1/completions"
        direct: Routes = lambda tenant, n: (url, {})  # noqa: E731
        for name, (tenants, fair) in plans.items():
            if name == "no noise" or not args.baseline_only:
                report.measure(
                    name, load, args.schedules, partial(real_run, direct, tenants, fair, True)
                )
        if args.processes:
            simulated_runs(load, args.processes, args.simulation_seeds, report)
        for instances, workers in args.through_gateways:
            shape = f"{instances} instance{'s' if instances > 1 else ''} x {workers} workers"
            with gateway_routes(standin.url, load, instances, workers) as routes:
                for noise, tenants in (("no noise", list(QUIET)), ("noise", [*QUIET, NOISY])):
                    run_one = partial(real_run, routes, tenants, True, False)
                    name = f"{noise}, fair queue in the gateway, {shape}"
                    report.measure(name, load, args.schedules, run_one)
    command = "python -m bench.fairness " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"load": asdict(load), **asdict(report)}, indent=2) + "\n"
    )
    text = markdown(load, report, command.strip())
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
