"""Routing policies side by side on several vLLM replicas: the same multi-tenant streaming
conversations through the gateway with each `routing.policy`, and what the replicas saw.

    python -m bench.gpu.routing_compare --replica URL PID LOG [--replica ...] \\
        --adapters-dir DIR --out-dir DIR [--policies round_robin affinity prefix]

bench/gpu/replicas_run.sh starts the replicas (stock vLLM on the GPU, or the stand-in here with
DRY_RUN=1) and runs this. For each policy, in turn: every replica is reset (its LoRA adapters
unloaded, its prefix cache emptied), a fresh gateway is started in front of all of them (its
own SQLite store, from a folder outside the checkout), the tenants and their adapters are
registered (runtime loading: vLLM starts with none), and `--users` simulated users talk to it
for `--seconds`: each user belongs to one tenant and one of its models, and holds
conversations of `--turns` turns that start with the tenant's system prompt; every turn sends
the whole history back (the answer included), as chat clients do. Measured per policy: output
tokens/s, TTFT (p50, p99; first turns and follow-ups apart), adapter loads (the gateway's
counter), vLLM's prefix-cache hit rate (`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries`,
in tokens, over the run) and each replica's `num_requests_waiting` and LoRA slots over time.

Scenarios, as options: `--hot-share F` sends that share of the users to one tenant's one
model (a hot tenant, whose adapter the policies may spread over several replicas; which
replicas held it at the end is recorded); `--kill-at-s S` SIGKILLs replica `--kill-replica`
(its process group: vLLM's engine too) S seconds into each policy's load and starts it again
`--restart-after-s` later with `--restart-script` (bench/gpu/start_replica.sh), then records
per second of the load the requests that ended ok and failed (failures per replica, from the
gateway's access log), when the gateway ejected and re-admitted it (its admin API, polled
every HEALTH_SAMPLE_S), and when the adapters it held were loaded on it again (its
/v1/models); `--repeats N` runs the whole list of policies N times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench import machine
from bench.measures import percentile
from bench.processes import (
    PYTHON,
    ServerProcess,
    free_port,
    pid_alive,
    start_server,
    wait_until_ready,
)

ADMIN_KEY = "routing-bench-admin-key-0123456789"
LIMITS = {
    "requests_per_minute": 1_000_000,
    "tokens_per_minute": 1_000_000_000,
    "max_concurrent": 100_000,
    "tokens_per_day": 100_000_000_000,
}
WORDS = (
    "order",
    "invoice",
    "shipment",
    "refund",
    "account",
    "password",
    "warranty",
    "delivery",
    "product",
    "customer",
    "support",
    "policy",
    "return",
    "exchange",
    "battery",
    "screen",
    "cable",
    "charger",
    "manual",
    "setting",
    "network",
    "update",
    "error",
    "message",
    "printer",
    "laptop",
    "phone",
    "tablet",
    "subscription",
    "plan",
    "price",
    "discount",
)
SAMPLE_S = 2.0
HEALTH_SAMPLE_S = 0.5
GONE_TIMEOUT_S = 60.0  # for a killed replica's processes to be gone (its GPU memory free)


@dataclass
class Replica:
    """A replica, its process (group leader) and log; both change when it is restarted."""

    url: str
    pid: int
    log: Path


@dataclass(frozen=True)
class BenchTenant:
    name: str
    key: str
    models: tuple[str, ...]  # public names, one adapter each
    system_prompt: str


@dataclass
class Turn:
    """One request of a conversation, as the client saw it."""

    turn: int
    start_s: float
    ok: bool
    ttft_ms: float | None = None
    output_tokens: int = 0
    end_s: float = 0.0
    error: str | None = None
    request_id: str | None = None
    replica: str | None = None  # the gateway's access log says which served it


@dataclass
class Kill:
    """One replica killed during the load and started again; times in s from the load's
    start, the others found from the health samples once the load is over."""

    replica: str
    held: list[str]  # the adapters the gateway said it held just before the kill
    killed_s: float
    restarted_s: float | None = None  # when the restart began
    ejected_s: float | None = None
    readmitted_s: float | None = None
    reapplied_s: float | None = None  # the first sample with every held adapter loaded
    error: str | None = None  # the restart failed

    def figures(self, samples: list[dict[str, Any]]) -> None:
        after_kill = [s for s in samples if s["t_s"] >= self.killed_s]
        down = [s for s in after_kill if s["gateway"].get(self.replica) is False]
        self.ejected_s = down[0]["t_s"] if down else None
        restarted = self.restarted_s if self.restarted_s is not None else float("inf")
        back = [s for s in after_kill if s["t_s"] >= restarted and s["gateway"].get(self.replica)]
        self.readmitted_s = back[0]["t_s"] if back else None
        applied = [
            s
            for s in back
            if s["served"].get(self.replica) is not None
            and set(self.held) <= set(s["served"][self.replica])
        ]
        self.reapplied_s = applied[0]["t_s"] if applied else None


@dataclass
class PolicyRun:
    policy: str
    repeat: int = 1
    turns: list[Turn] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)
    kill: Kill | None = None
    hot_adapter: str | None = None
    hot_adapter_on: list[str] = field(default_factory=list)  # replicas holding it at the end
    replicas: dict[str, dict[str, float]] = field(default_factory=dict)
    adapter_loads: float | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        done = [turn for turn in self.turns if turn.ok and turn.ttft_ms is not None]
        first = [t.ttft_ms for t in done if t.turn == 1 and t.ttft_ms is not None]
        later = [t.ttft_ms for t in done if t.turn > 1 and t.ttft_ms is not None]
        ttfts = first + later
        hits = sum(r.get("prefix_cache_hits", 0.0) for r in self.replicas.values())
        queries = sum(r.get("prefix_cache_queries", 0.0) for r in self.replicas.values())
        tokens = sum(turn.output_tokens for turn in done)
        minutes = self.duration_s / 60 if self.duration_s else 0
        return {
            "policy": self.policy,
            "repeat": self.repeat,
            "requests": len(done),
            "failed": len(self.turns) - len(done),
            "output_tok_s": tokens / self.duration_s if self.duration_s else 0.0,
            "ttft_p50_ms": percentile(ttfts, 50) if ttfts else None,
            "ttft_p99_ms": percentile(ttfts, 99) if ttfts else None,
            "ttft_first_turn_p50_ms": percentile(first, 50) if first else None,
            "ttft_follow_up_p50_ms": percentile(later, 50) if later else None,
            "prefix_cache_hit_rate": hits / queries if queries else None,
            "adapter_loads": self.adapter_loads,
            "adapter_loads_per_min": self.adapter_loads / minutes
            if self.adapter_loads is not None and minutes
            else None,
            "waiting_mean": {
                url: _mean([s["replicas"][url]["waiting"] for s in self.samples])
                for url in self.replicas
            },
            "waiting_max": {
                url: max((s["replicas"][url]["waiting"] for s in self.samples), default=0.0)
                for url in self.replicas
            },
            "failed_by_replica": dict(
                sorted(Counter(t.replica or "none" for t in self.turns if not t.ok).items())
            ),
            "hot_adapter": self.hot_adapter,
            "hot_adapter_on": self.hot_adapter_on,
            "kill": asdict(self.kill) if self.kill is not None else None,
        }

    def per_second(self) -> list[dict[str, Any]]:
        """Requests that ended in each second of the load: ok, failed, failed per replica."""
        if not self.turns:
            return []
        seconds = []
        for second in range(int(max(t.end_s for t in self.turns)) + 1):
            ended = [t for t in self.turns if int(t.end_s) == second]
            failed = Counter(t.replica or "none" for t in ended if not t.ok)
            seconds.append(
                {
                    "s": second,
                    "ok": sum(1 for t in ended if t.ok),
                    "failed": sum(failed.values()),
                    "failed_by_replica": dict(sorted(failed.items())),
                }
            )
        return seconds


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    if args.kill_at_s is not None and args.restart_script is None:
        parser.error("--kill-at-s needs --restart-script")
    replicas = [Replica(url, int(pid), Path(log)) for url, pid, log in args.replica]
    for replica in replicas:
        _wait_for(replica, args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[PolicyRun] = []
    written: list[Path] = []
    for repeat in range(1, args.repeats + 1):
        for policy in args.policies:
            _log(f"policy {policy}, run {repeat} of {args.repeats}")
            try:
                runs.append(_run_policy(policy, repeat, replicas, args))
            except Exception as error:  # one broken policy must not cost the others
                _log(f"policy {policy} failed: {error!r}")
                runs.append(PolicyRun(policy, repeat, notes=[f"failed: {error!r}"]))
            _log("  " + json.dumps(runs[-1].summary()))
            # after every run: a series cut short by the machine's time limit keeps what it did
            written = _write(args, argv, runs)
    for path in written:
        print(f"wrote {path}")
    return 0 if all(run.turns for run in runs) else 1


def _run_policy(
    policy: str, repeat: int, replicas: list[Replica], args: argparse.Namespace
) -> PolicyRun:
    run = PolicyRun(policy, repeat)
    for replica in replicas:
        _wait_for(replica, args)  # a replica restarted in the run before may still be starting
        run.notes += _reset(replica.url)
    gateway = _start_gateway(policy, replicas, args)
    try:
        tenants = _provision(gateway.url, args)
        if args.hot_share:
            run.hot_adapter = _hot_adapter(args)
        before = {r.url: _vllm_counters(r.url) for r in replicas}
        loads_before = _adapter_loads(gateway.url)
        asyncio.run(_load(run, gateway.url, tenants, replicas, args))
        if run.kill is not None and run.kill.error is None:
            _wait_for(replicas[args.kill_replica], args)  # for its counters
        after = {r.url: _vllm_counters(r.url) for r in replicas}
        loads_after = _adapter_loads(gateway.url)
        # counters of a restarted replica start again at 0: its difference is then wrong
        run.replicas = {
            url: {name: value - before[url].get(name, 0.0) for name, value in after[url].items()}
            for url in after
        }
        if run.kill is not None:
            run.notes.append(f"{run.kill.replica} restarted: its vLLM counters are not comparable")
        if loads_before is not None and loads_after is not None:
            run.adapter_loads = loads_after - loads_before
        if run.hot_adapter is not None:
            view = _replicas_view(gateway.url)
            run.hot_adapter_on = sorted(u for u, item in view.items() if run.hot_adapter in item)
    finally:
        gateway.stop()
        _attribute(run, gateway.log())
        run.notes.append(f"gateway log tail: {gateway.log()[-1500:]}")
    return run


def _wait_for(replica: Replica, args: argparse.Namespace) -> None:
    _log(f"waiting for {replica.url}/health")
    wait_until_ready(
        replica.url + "/health",
        args.wait_s,
        partial(pid_alive, replica.pid),
        replica.log,
        f"the replica at {replica.url}",
        1.0,
    )


def _attribute(run: PolicyRun, gateway_log: str) -> None:
    """Each turn's replica, from the gateway's access log (joined by request id)."""
    served = {}
    for line in gateway_log.splitlines():
        if line.startswith('{"ts"') and '"event":"request"' in line:
            entry = json.loads(line)
            served[entry["request_id"]] = entry["replica"]
    for turn in run.turns:
        turn.replica = served.get(turn.request_id or "")


def _reset(url: str) -> list[str]:
    """Unload every adapter and empty the prefix cache, so each policy starts alike."""
    notes = []
    cards = httpx.get(url + "/v1/models", timeout=30).json()["data"]
    for card in cards:
        if card.get("parent"):
            unloaded = httpx.post(
                url + "/v1/unload_lora_adapter", json={"lora_name": card["id"]}, timeout=60
            )
            if unloaded.status_code != 200:
                notes.append(f"{url}: unloading {card['id']}: {unloaded.status_code}")
    try:
        reset = httpx.post(url + "/reset_prefix_cache", timeout=60)
        if reset.status_code != 200:
            notes.append(f"{url}: /reset_prefix_cache answered {reset.status_code}")
    except httpx.HTTPError as error:
        notes.append(f"{url}: /reset_prefix_cache: {error!r}")
    return notes


def _start_gateway(policy: str, replicas: list[Replica], args: argparse.Namespace) -> ServerProcess:
    folder = args.work_dir / f"gateway-{policy}"
    shutil.rmtree(folder, ignore_errors=True)  # an earlier run's store holds its tenants
    folder.mkdir(parents=True)
    port = free_port()
    first, *others = replicas
    env = {
        **dict(line.split("=", 1) for line in args.gateway_setting),
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(folder / "gateway.db"),
        "VLLM_GATEWAY_UPSTREAM__REPLICAS": json.dumps([r.url for r in others]),
        "VLLM_GATEWAY_ROUTING__POLICY": policy,
    }
    argv = [
        args.gateway_python,
        "-m",
        "gateway.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--upstream",
        first.url,
    ]
    return start_server(argv, port, folder / "gateway.log", "/healthz", env, 120.0, folder)


def _provision(gateway_url: str, args: argparse.Namespace) -> list[BenchTenant]:
    """`--tenants` tenants, each with `--adapters-per-tenant` registered adapters (one public
    model each), a key, and a system prompt of its own."""
    admin = httpx.Client(
        base_url=gateway_url + "/admin/v1",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    adapter_names = _adapter_names(args)
    made = []
    with admin:
        for index in range(args.tenants):
            name = f"routing-bench-{index}"
            tenant = admin.post("/tenants", json={"name": name, "models": {}, "limits": LIMITS})
            tenant.raise_for_status()
            tenant_id = tenant.json()["id"]
            models = {}
            for slot in range(args.adapters_per_tenant):
                number = index * args.adapters_per_tenant + slot
                adapter = adapter_names[number % len(adapter_names)]
                registered = admin.post(
                    "/adapters",
                    json={
                        "name": adapter,
                        "path": str(args.adapters_dir / adapter),
                        "base_model": "base",
                        "tenant_id": tenant_id,
                    },
                )
                registered.raise_for_status()
                models[f"chat-{slot}"] = {"base_model": "base", "adapter": adapter}
            admin.patch(f"/tenants/{tenant_id}", json={"models": models}).raise_for_status()
            key = admin.post("/keys", json={"tenant_id": tenant_id, "name": "bench"})
            key.raise_for_status()
            made.append(
                BenchTenant(name, key.json()["secret"], tuple(models), _system_prompt(index, args))
            )
    return made


def _adapter_names(args: argparse.Namespace) -> list[str]:
    return sorted(
        p.name for p in args.adapters_dir.iterdir() if (p / "adapter_config.json").exists()
    )


def _system_prompt(index: int, args: argparse.Namespace) -> str:
    rng = random.Random(f"system-{index}")
    words = [f"You are the assistant of company {index}."]
    while sum(len(w) + 1 for w in words) < args.system_chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


async def _load(
    run: PolicyRun,
    gateway_url: str,
    tenants: list[BenchTenant],
    replicas: list[Replica],
    args: argparse.Namespace,
) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    started = time.monotonic()
    deadline = started + args.seconds
    urls = [r.url for r in replicas]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        samplers = [asyncio.create_task(_sample(run, session, urls, started))]
        killer = None
        if args.kill_at_s is not None:
            samplers.append(asyncio.create_task(_health(run, session, gateway_url, urls, started)))
            victim = replicas[args.kill_replica]
            killer = asyncio.create_task(_kill_and_restart(run, gateway_url, victim, started, args))
        users = [
            _user(run, session, gateway_url, tenants, index, started, deadline, args)
            for index in range(args.users)
        ]
        await asyncio.gather(*users)
        if killer is not None:  # not cut short: the next run needs the replica started again
            try:
                await killer
            except Exception as error:
                run.notes.append(f"killing or restarting the replica failed: {error!r}")
        for sampler in samplers:
            sampler.cancel()
    if run.kill is not None:
        run.kill.figures(run.health)
    run.duration_s = max((t.end_s for t in run.turns), default=0.0) - min(
        (t.start_s for t in run.turns), default=0.0
    )


async def _user(
    run: PolicyRun,
    session: aiohttp.ClientSession,
    gateway_url: str,
    tenants: list[BenchTenant],
    index: int,
    started: float,
    deadline: float,
    args: argparse.Namespace,
) -> None:
    tenant, model = _tenant_of(tenants, index, args)
    rng = random.Random(f"user-{index}")
    headers = {"Authorization": f"Bearer {tenant.key}"}
    while time.monotonic() < deadline:
        messages = [{"role": "system", "content": tenant.system_prompt}]
        for number in range(1, args.turns + 1):
            if time.monotonic() >= deadline:
                return
            question = " ".join(rng.choice(WORDS) for _ in range(args.question_words))
            messages.append({"role": "user", "content": question + "?"})
            body = {
                "model": model,
                "messages": messages,
                "max_tokens": args.output_len,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            turn, answer = await _stream(session, gateway_url, headers, body, number, started)
            run.turns.append(turn)
            if not turn.ok:
                break  # e.g. the history outgrew the model: a new conversation
            messages.append({"role": "assistant", "content": answer})


async def _stream(
    session: aiohttp.ClientSession,
    gateway_url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    number: int,
    started: float,
) -> tuple[Turn, str]:
    sent = time.monotonic()
    turn = Turn(number, sent - started, ok=False)
    parts: list[str] = []
    try:
        async with session.post(
            gateway_url + "/v1/chat/completions", json=body, headers=headers
        ) as response:
            turn.request_id = response.headers.get("x-request-id")
            if response.status != 200:
                turn.error = f"{response.status}: {(await response.text())[:200]}"
                turn.end_s = time.monotonic() - started
                return turn, ""
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:  # the gateway ends a broken stream with an error event
                    turn.error = f"stream error event: {chunk['error'].get('message')}"
                    break
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if turn.ttft_ms is None:
                            turn.ttft_ms = (time.monotonic() - sent) * 1e3
                        parts.append(content)
                usage = chunk.get("usage")
                if usage:
                    turn.output_tokens = usage.get("completion_tokens", 0)
        turn.ok = turn.ttft_ms is not None and turn.error is None
    except (aiohttp.ClientError, TimeoutError) as error:
        turn.error = repr(error)
    turn.end_s = time.monotonic() - started
    return turn, "".join(parts)


async def _sample(
    run: PolicyRun, session: aiohttp.ClientSession, replica_urls: list[str], started: float
) -> None:
    """Each replica's queue and LoRA slots every SAMPLE_S seconds, while the load runs (a
    replica that does not answer, killed, counts as idle)."""
    while True:
        sample: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1), "replicas": {}}
        for url in replica_urls:
            try:
                async with session.get(url + "/metrics") as response:
                    sample["replicas"][url] = _gauges(await response.text())
            except (aiohttp.ClientError, TimeoutError):
                sample["replicas"][url] = _gauges("")
        run.samples.append(sample)
        await asyncio.sleep(SAMPLE_S)


async def _health(
    run: PolicyRun,
    session: aiohttp.ClientSession,
    gateway_url: str,
    replica_urls: list[str],
    started: float,
) -> None:
    """Every HEALTH_SAMPLE_S: whether the gateway routes to each replica (its admin API) and
    the adapters each one serves (its /v1/models; None: no answer)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    bound = aiohttp.ClientTimeout(total=5)
    while True:
        sample: dict[str, Any] = {"t_s": round(time.monotonic() - started, 2)}
        try:
            async with session.get(
                gateway_url + "/admin/v1/replicas", headers=headers, timeout=bound
            ) as response:
                items = (await response.json())["items"]
            sample["gateway"] = {item["url"]: item["healthy"] for item in items}
        except (aiohttp.ClientError, TimeoutError):
            sample["gateway"] = {}
        sample["served"] = {}
        for url in replica_urls:
            try:
                async with session.get(url + "/v1/models", timeout=bound) as response:
                    cards = (await response.json())["data"]
                sample["served"][url] = sorted(c["id"] for c in cards if c.get("parent"))
            except (aiohttp.ClientError, TimeoutError):
                sample["served"][url] = None
        run.health.append(sample)
        await asyncio.sleep(HEALTH_SAMPLE_S)


async def _kill_and_restart(
    run: PolicyRun, gateway_url: str, victim: Replica, started: float, args: argparse.Namespace
) -> None:
    """SIGKILL the victim's process group `--kill-at-s` into the load, wait until it is gone,
    and start it again `--restart-after-s` later with `--restart-script`."""
    await asyncio.sleep(max(0.0, started + args.kill_at_s - time.monotonic()))
    held = (await asyncio.to_thread(_replicas_view, gateway_url)).get(victim.url, [])
    os.killpg(victim.pid, signal.SIGKILL)
    run.kill = kill = Kill(victim.url, held, round(time.monotonic() - started, 2))
    _log(f"  killed {victim.url} (process group {victim.pid}) holding {held}")
    gone_by = time.monotonic() + GONE_TIMEOUT_S
    while _group_alive(victim.pid) and time.monotonic() < gone_by:
        await asyncio.sleep(0.2)
    await asyncio.sleep(args.restart_after_s)
    index = args.kill_replica
    log = victim.log.with_name(f"replica-{index}-restart-{run.policy}-{run.repeat}.log")
    kill.restarted_s = round(time.monotonic() - started, 2)
    started_script = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(args.restart_script), str(index), str(log)],
        capture_output=True,
        text=True,
    )
    if started_script.returncode != 0:
        kill.error = started_script.stderr[-1000:]
        return
    victim.pid, victim.log = int(started_script.stdout.split()[-1]), log
    _log(f"  restarted {victim.url} as process group {victim.pid}")


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` runs (zombies, dead but not yet reaped, do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _replicas_view(gateway_url: str) -> dict[str, list[str]]:
    """The adapters the gateway says each replica holds."""
    response = httpx.get(
        gateway_url + "/admin/v1/replicas",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    response.raise_for_status()
    return {item["url"]: item["adapters"] for item in response.json()["items"]}


def _tenant_of(
    tenants: list[BenchTenant], index: int, args: argparse.Namespace
) -> tuple[BenchTenant, str]:
    """User `index`'s tenant and model: with `--hot-share`, the first users (that share of
    them) all use tenant 0's first model; the others, and every user without it, spread
    evenly over the (other) tenants and their models."""
    hot_users = round(args.hot_share * args.users)
    if index < hot_users:
        return tenants[0], tenants[0].models[0]
    others = tenants[1:] if hot_users and len(tenants) > 1 else tenants
    rest = index - hot_users
    tenant = others[rest % len(others)]
    return tenant, tenant.models[(rest // len(others)) % len(tenant.models)]


def _hot_adapter(args: argparse.Namespace) -> str:
    """The adapter behind tenant 0's first model (as `_provision` assigns them)."""
    return _adapter_names(args)[0]


def _gauges(text: str) -> dict[str, Any]:
    gauges: dict[str, Any] = {"waiting": 0.0, "running": 0.0, "running_lora_adapters": ""}
    latest = float("-inf")
    for line in text.splitlines():
        if line.startswith("vllm:num_requests_waiting"):
            gauges["waiting"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("vllm:num_requests_running"):
            gauges["running"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("vllm:lora_requests_info{"):
            # one sample per label set seen, its value the time it was last true: the latest
            stamp = float(line.rsplit(" ", 1)[1])
            if stamp < latest:
                continue
            latest = stamp
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            gauges["running_lora_adapters"] = labels.get("running_lora_adapters", "")
            gauges["waiting_lora_adapters"] = labels.get("waiting_lora_adapters", "")
    return gauges


def _vllm_counters(url: str) -> dict[str, float]:
    """vLLM's prefix-cache counters (tokens; every label set added up)."""
    names = {
        "vllm:prefix_cache_hits_total": "prefix_cache_hits",
        "vllm:prefix_cache_queries_total": "prefix_cache_queries",
        "vllm:prompt_tokens_total": "prompt_tokens",
        "vllm:generation_tokens_total": "generation_tokens",
    }
    totals = dict.fromkeys(names.values(), 0.0)
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names and not line.startswith("#"):
            totals[names[name]] += float(line.rsplit(" ", 1)[1])
    return totals


def _adapter_loads(gateway_url: str) -> float | None:
    """Adapters the gateway loaded, all workers together (None: no metrics)."""
    response = httpx.get(gateway_url + "/metrics", timeout=30)
    if response.status_code != 200:
        return None
    total = 0.0
    for line in response.text.splitlines():
        if line.startswith("vllm_gateway_adapter_operations_total{") and all(
            label in line for label in ('operation="load"', 'outcome="ok"')
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _write(args: argparse.Namespace, argv: list[str], runs: list[PolicyRun]) -> list[Path]:
    described = machine.describe()
    summaries = [run.summary() for run in runs]
    context = {
        "date": described["date"],
        "machine": described,
        "command": shlex.join(["python", "-m", "bench.gpu.routing_compare", *argv]),
        "context": dict(item.split("=", 1) for item in args.context),
        "load": {
            "users": args.users,
            "seconds": args.seconds,
            "turns": args.turns,
            "tenants": args.tenants,
            "adapters_per_tenant": args.adapters_per_tenant,
            "system_chars": args.system_chars,
            "question_words": args.question_words,
            "output_len": args.output_len,
            "repeats": args.repeats,
            "hot_share": args.hot_share,
            "kill_at_s": args.kill_at_s,
            "kill_replica": args.kill_replica if args.kill_at_s is not None else None,
            "restart_after_s": args.restart_after_s if args.kill_at_s is not None else None,
        },
    }
    data = {
        **context,
        "summaries": summaries,
        "runs": [{**asdict(run), "per_second": run.per_second()} for run in runs],
    }
    json_path = args.out_dir / f"{args.name}.json"
    json_path.write_text(json.dumps(data, indent=1))
    md_path = args.out_dir / f"{args.name}.md"
    md_path.write_text(_markdown(context, summaries, runs))
    return [json_path, md_path]


def _markdown(
    context: dict[str, Any], summaries: list[dict[str, Any]], runs: list[PolicyRun]
) -> str:
    load = context["load"]
    lines = [
        "# Routing policies on several vLLM replicas",
        "",
        f"- Date: {context['date']}",
        f"- Command: `{context['command']}`",
        *[f"- {key}: {value}" for key, value in context["context"].items()],
        f"- Load: {load['users']} users for {load['seconds']} s per policy, "
        f"{load['tenants']} tenants x {load['adapters_per_tenant']} adapters (one public model "
        f"each), conversations of {load['turns']} turns starting with the tenant's system "
        f"prompt ({load['system_chars']} characters), questions of {load['question_words']} "
        f"words, {load['output_len']} output tokens (ignore_eos), streamed; each turn sends "
        "the whole history back.",
        *_scenario_lines(load),
        "",
        "| policy | run | requests | failed | output tok/s | TTFT p50 ms | TTFT p99 ms | "
        "first turn p50 ms | follow-up p50 ms | prefix-cache hit rate | adapter loads | "
        "loads/min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['policy']} | {s['repeat']} | {s['requests']} | {s['failed']} | "
            f"{s['output_tok_s']:,.0f} | "
            f"{_ms(s['ttft_p50_ms'])} | {_ms(s['ttft_p99_ms'])} | "
            f"{_ms(s['ttft_first_turn_p50_ms'])} | {_ms(s['ttft_follow_up_p50_ms'])} | "
            f"{_pct(s['prefix_cache_hit_rate'])} | {_num(s['adapter_loads'])} | "
            f"{_num(s['adapter_loads_per_min'])} |"
        )
    several = load["repeats"] > 1
    if several:
        lines += _repeat_lines(summaries)

    def name(s: dict[str, Any]) -> str:
        return f"{s['policy']}, run {s['repeat']}" if several else s["policy"]

    baselines = {s["repeat"]: s for s in summaries if s["policy"] == "round_robin"}
    against = [s for s in summaries if s["repeat"] in baselines and s["policy"] != "round_robin"]
    if against:
        lines += ["", "Against round-robin" + (" (of the same run):" if several else ":"), ""]
        for s in against:
            baseline = baselines[s["repeat"]]
            if not baseline["output_tok_s"]:
                continue
            ratio = s["output_tok_s"] / baseline["output_tok_s"]
            hit = s["prefix_cache_hit_rate"]
            base_hit = baseline["prefix_cache_hit_rate"]
            hits = f"{hit / base_hit:.2f}x" if hit is not None and base_hit else "n/a"
            loads = s["adapter_loads"]
            fewer = (
                f"{baseline['adapter_loads'] / loads:.1f}x fewer"
                if loads and baseline["adapter_loads"] is not None
                else "n/a"
            )
            lines.append(
                f"- {name(s)}: {ratio:.2f}x the output tok/s, {hits} the prefix-cache hit "
                f"rate, adapter loads {fewer}, TTFT p50 {_ms(s['ttft_p50_ms'])} vs "
                f"{_ms(baseline['ttft_p50_ms'])} ms"
            )
    lines += ["", "Waiting requests per replica (vllm:num_requests_waiting, mean / max):", ""]
    for s in summaries:
        cells = ", ".join(
            f"{url}: {s['waiting_mean'][url]:.1f} / {s['waiting_max'][url]:.0f}"
            for url in s["waiting_mean"]
        )
        lines.append(f"- {name(s)}: {cells or 'n/a'}")
    for run, s in zip(runs, summaries, strict=True):
        lines += _hot_and_kill_lines(run, name(s))
        short = [note for note in run.notes if not note.startswith("gateway log tail")]
        if short:
            lines += ["", f"Notes ({name(s)}): " + "; ".join(short)]
    return "\n".join(lines) + "\n"


def _scenario_lines(load: dict[str, Any]) -> list[str]:
    lines = []
    if load["hot_share"]:
        lines.append(
            f"- Hot tenant: {100 * load['hot_share']:.0f}% of the users belong to tenant 0 and "
            "use its first model (one adapter); the others spread over the other tenants."
        )
    if load["kill_at_s"] is not None:
        lines.append(
            f"- Kill: replica {load['kill_replica']} SIGKILLed (its process group) "
            f"{load['kill_at_s']:g} s into each run's load, started again "
            f"{load['restart_after_s']:g} s after its processes were gone."
        )
    if load["repeats"] > 1:
        lines.append(f"- Repeats: every policy ran {load['repeats']} times, in turn.")
    return lines


def _repeat_lines(summaries: list[dict[str, Any]]) -> list[str]:
    """Per policy over its runs: the median and the range of tok/s and TTFT p50."""
    lines = [
        "",
        "Across runs (median, min-max):",
        "",
        "| policy | runs | output tok/s | TTFT p50 ms | failed (all runs) |",
        "|---|---|---|---|---|",
    ]
    for policy in dict.fromkeys(s["policy"] for s in summaries):
        mine = [s for s in summaries if s["policy"] == policy]
        tok_s = [s["output_tok_s"] for s in mine]
        ttft = [s["ttft_p50_ms"] for s in mine if s["ttft_p50_ms"] is not None]
        lines.append(
            f"| {policy} | {len(mine)} | {_spread(tok_s)} | {_spread(ttft)} | "
            f"{sum(s['failed'] for s in mine)} |"
        )
    return lines


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def _hot_and_kill_lines(run: PolicyRun, name: str) -> list[str]:
    lines = []
    if run.hot_adapter is not None:
        where = ", ".join(run.hot_adapter_on) or "no replica"
        lines += ["", f"Hot adapter ({name}): {run.hot_adapter} on {where} at the end."]
    kill = run.kill
    if kill is None:
        return lines

    def after(moment: float | None, since: float | None) -> str:
        if moment is None or since is None:
            return "never (within the load)"
        return f"{moment - since:.1f} s"

    failed = run.summary()["failed_by_replica"]
    lines += [
        "",
        f"Kill ({name}): {kill.replica} killed at {kill.killed_s:.1f} s holding "
        f"{', '.join(kill.held) or 'no adapter'}; ejected after "
        f"{after(kill.ejected_s, kill.killed_s)}; restart began at "
        f"{_num(kill.restarted_s)} s, re-admitted {after(kill.readmitted_s, kill.restarted_s)} "
        f"after it; its adapters loaded again {after(kill.reapplied_s, kill.restarted_s)} after "
        f"it; failed requests by replica: {failed or 'none'}"
        + (f"; restart failed: {kill.error}" if kill.error else ""),
        "",
        "| seconds | ok | failed | failed by replica |",
        "|---|---|---|---|",
    ]
    seconds = run.per_second()
    for start in range(0, len(seconds), 5):  # 5-second rows; the JSON has every second
        window = seconds[start : start + 5]
        by_replica: Counter[str] = Counter()
        for second in window:
            by_replica.update(second["failed_by_replica"])
        cells = ", ".join(f"{url}: {count}" for url, count in sorted(by_replica.items()))
        lines.append(
            f"| {start}-{start + len(window)} | {sum(s['ok'] for s in window)} | "
            f"{sum(s['failed'] for s in window)} | {cells} |"
        )
    return lines


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu.routing_compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--replica",
        nargs=3,
        action="append",
        required=True,
        metavar=("URL", "PID", "LOG"),
        help="a replica, its process (a wait ends when it exits) and its log (repeat)",
    )
    parser.add_argument("--adapters-dir", type=Path, required=True, help="the adapters' folders")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True, help="outside the checkout")
    parser.add_argument("--name", default="gpu-routing", help="the results' file name")
    parser.add_argument("--policies", nargs="+", default=["round_robin", "affinity", "prefix"])
    parser.add_argument("--users", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=60.0, help="of load per policy")
    parser.add_argument("--turns", type=int, default=5, help="per conversation")
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--adapters-per-tenant", type=int, default=2)
    parser.add_argument("--system-chars", type=int, default=3000)
    parser.add_argument("--question-words", type=int, default=40)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--gateway-python", default=PYTHON)
    parser.add_argument(
        "--gateway-setting",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="an environment setting of the gateway (repeatable)",
    )
    parser.add_argument("--wait-s", type=float, default=600.0, help="for the replicas to be up")
    parser.add_argument("--repeats", type=int, default=1, help="runs of the list of policies")
    parser.add_argument(
        "--hot-share",
        type=float,
        default=0.0,
        help="share of the users on tenant 0's first model (0: users spread evenly)",
    )
    parser.add_argument(
        "--kill-at-s",
        type=float,
        help="SIGKILL replica --kill-replica this long into each run's load (default: never)",
    )
    parser.add_argument("--kill-replica", type=int, default=1, help="its index in --replica")
    parser.add_argument(
        "--restart-after-s",
        type=float,
        default=0.0,
        help="after the killed replica's processes are gone, before it is started again",
    )
    parser.add_argument(
        "--restart-script",
        type=Path,
        help="`bash SCRIPT INDEX LOG` starts replica INDEX detached and prints its PID "
        "(bench/gpu/start_replica.sh); needed with --kill-at-s",
    )
    parser.add_argument("--context", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
