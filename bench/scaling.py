"""How far the gateway scales out: req/s, gateway CPU per request and Redis operations per
request for 1, 2 and 4 all-on gateway instances on one Redis and on a Redis Cluster.

    .venv/bin/python -m bench.scaling            # about 2 minutes; writes bench/results/
    .venv/bin/python -m bench.scaling --quick    # a smoke run, printed, nothing written

Each topology gets its own Redis (a throwaway `redis-server`, or 3 primaries + 3 replicas from
bench/redis_cluster.py), so the INFO deltas count only this run. Four gateways start like
bench/full_pipeline.py's all-on one (key auth on the Redis store, Redis limits per tenant set
far above what the machine can send, the safety policy with an input and an output rule,
LoRA routing over two stand-in replicas, metrics, access log), all on one key prefix and one
key-hash secret, so they share tenants, keys and limits like instances behind a load
balancer. Tenants are several (`--tenants`), so that on the Cluster their limits land on
every shard; one wrk per measured instance sends plain requests, rotating over the tenants'
keys.

Per window: requests and errors (wrk), CPU seconds of each process group from /proc (the
gateways', the stand-ins', the wrk clients', Redis's own INFO cpu) and the per-node
INFO commandstats and stats deltas. Since everything shares the same cores, the req/s of
more instances cannot grow here; what transfers to other machines are the costs per
request: gateway CPU-ms, Redis commands and Redis CPU-µs per request, per shard.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.crc import key_slot

from bench import machine
from bench.full_pipeline import (
    ADAPTER,
    ADMIN_KEY,
    GENEROUS_LIMITS,
    POLICY,
    SAFETY_POLICY,
    standin,
)
from bench.measures import tree_cpu_seconds
from bench.processes import REPO_ROOT, ServerProcess, free_port, running_server
from bench.redis_cluster import running_cluster
from bench.redis_server import start_redis_server
from bench.servers import MODEL, stop_on_sigterm

RESULTS = Path(__file__).parent / "results"
MAX_TOKENS = 16
INSTANCE_COUNTS = (1, 2, 4)
# Scripts count as one command each in commandstats, and so does every command they run.
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
TROUBLE_COUNTERS = (
    'vllm_gateway_redis_fail_open_total{component="rate_limits"}',
    'vllm_gateway_redis_errors_total{operation="rate_limit_reserve"}',
)
# The limiter's round-trip budget (default 50 ms). On 2 shared cores under full load a
# round trip can wait longer than that for a core, and the limiter then falls back to the
# per-instance limiter for a second, skipping Redis; a first run showed 0.23 reservations per
# request with 1 instance. Raised so that every request pays for Redis, as on a sized
# deployment; the `limiter fallbacks` column checks it (`--limiter-timeout 0.05`: the default).
LIMITER_TIMEOUT_S = 1.0
BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": MAX_TOKENS}
)
# Like bench/wrk_post.lua, but each request carries the next tenant's key.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local keys = {}
for key in string.gmatch(os.getenv("BENCH_KEYS"), "[^,]+") do table.insert(keys, key) end
local sent = 0
function request()
  sent = sent + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[(sent % #keys) + 1]
  return wrk.format()
end
function done(summary, latency)
  local errors = summary.errors
  local out = assert(io.open(os.getenv("BENCH_RESULT"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d,'
      .. ' "p50_us": %d, "p99_us": %d}',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
  out:close()
end
"""


@dataclass(frozen=True)
class Plan:
    seconds: int
    warmup_seconds: int
    idle_seconds: int
    rounds: int
    concurrency: int
    tenants: int
    topologies: tuple[str, ...]
    limiter_timeout_s: float = LIMITER_TIMEOUT_S


@dataclass
class RedisNode:
    name: str  # "redis", or "primary-1" ... "replica-3"
    port: int
    primary: bool
    slots: tuple[int, int] | None = None  # first, last (Cluster primaries)


@dataclass
class NodeSample:
    commands: dict[str, int]
    usec: dict[str, int]
    cpu_s: float
    reads: int


@dataclass
class Window:
    """One measured run: `instances` gateways under load at once, and what each part cost."""

    topology: str
    instances: int
    round: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    gateway_cpu_s: float
    standin_cpu_s: float
    client_cpu_s: float
    machine_busy_cores: float
    limiter_fallbacks: float
    redis: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def gateway_cpu_ms_per_request(self) -> float:
        return 1000 * self.gateway_cpu_s / max(1, self.requests)

    def redis_totals(self, primary: bool = True) -> dict[str, float]:
        """Per request, summed over the primaries (or the replicas)."""
        nodes = [node for node in self.redis.values() if node["primary"] is primary]
        commands = sum(int(n["commands_total"]) for n in nodes)
        scripts = sum(int(n["scripts"]) for n in nodes)
        reads = sum(int(n["reads"]) for n in nodes)
        cpu_s = sum(float(n["cpu_s"]) for n in nodes)
        per = max(1, self.requests)
        return {
            "commands_per_request": commands / per,
            "scripts_per_request": scripts / per,
            "reads_per_request": reads / per,
            "cpu_us_per_request": 1e6 * cpu_s / per,
            "cpu_cores": cpu_s / self.seconds,
        }

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rps": self.rps,
            "gateway_cpu_ms_per_request": self.gateway_cpu_ms_per_request,
            "requests_per_gateway_core_s": self.requests / max(1e-9, self.gateway_cpu_s),
            "primaries": self.redis_totals(primary=True),
            "replicas": self.redis_totals(primary=False),
        }


def node_sample(port: int) -> NodeSample:
    with redis.Redis(port=port, socket_timeout=5.0) as client:
        stats = client.info("commandstats")
        cpu = client.info("cpu")
        reads = int(client.info("stats")["total_reads_processed"])
    commands = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    usec = {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in stats.items()}
    cpu_s = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return NodeSample(commands, usec, cpu_s, reads)


def node_delta(node: RedisNode, before: NodeSample, after: NodeSample) -> dict[str, Any]:
    """What `node` did between two samples, less the INFO calls that took them."""
    commands = {
        name: calls - before.commands.get(name, 0)
        for name, calls in after.commands.items()
        if calls - before.commands.get(name, 0) > 0 and not name.startswith("info")
    }
    usec = {name: after.usec[name] - before.usec.get(name, 0) for name in commands}
    return {
        "primary": node.primary,
        "port": node.port,
        "commands": dict(sorted(commands.items(), key=lambda item: -item[1])),
        "usec": usec,
        "commands_total": sum(commands.values()),
        "scripts": sum(commands.get(name, 0) for name in SCRIPT_COMMANDS),
        "reads": after.reads - before.reads - 3,  # our three INFO calls
        "cpu_s": after.cpu_s - before.cpu_s,
    }


def limiter_trouble(gateways: list[ServerProcess]) -> float:
    """Limiter calls that failed or fell back to the per-instance limiter, so far, summed over
    `gateways` (their Prometheus counters): a window's requests all reached Redis only when
    this did not move."""
    total = 0.0
    for gateway in gateways:
        for line in httpx.get(f"{gateway.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(TROUBLE_COUNTERS):
                total += float(line.rsplit(" ", 1)[1])
    return total


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Deployment:
    """The running servers of one topology: Redis nodes, gateways, stand-ins, tenant keys."""

    topology: str
    nodes: list[RedisNode]
    gateways: list[ServerProcess]
    standins: list[ServerProcess]
    keys: list[str]
    tenant_ids: list[str]
    workdir: Path

    def samples(self) -> dict[str, NodeSample]:
        return {node.name: node_sample(node.port) for node in self.nodes}

    def deltas(self, before: dict[str, NodeSample]) -> dict[str, dict[str, Any]]:
        after = self.samples()
        return {n.name: node_delta(n, before[n.name], after[n.name]) for n in self.nodes}

    def shard_of(self, tenant_id: str) -> str:
        """The primary that holds a tenant's limiter keys: the slot of its hash tag (the id)."""
        slot = key_slot(tenant_id.encode())
        primaries = [node for node in self.nodes if node.primary]
        for node in primaries:
            if node.slots is not None and node.slots[0] <= slot <= node.slots[1]:
                return node.name
        return primaries[0].name  # one server: no slots

    def tenants_per_shard(self) -> dict[str, int]:
        counts = {node.name: 0 for node in self.nodes if node.primary}
        for tenant_id in self.tenant_ids:
            counts[self.shard_of(tenant_id)] += 1
        return counts


def start_gateway(
    workdir: Path, name: str, upstream: str, replica: str, env: dict[str, str], stack: ExitStack
) -> ServerProcess:
    """One all-on gateway, like bench/full_pipeline.py's, with its own SQLite file (and so its
    own usage log) beside its log."""
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--upstream", upstream]
    env = {
        **env,
        "VLLM_GATEWAY_UPSTREAM__REPLICAS": json.dumps([replica]),
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(workdir / f"{name}.db"),
    }
    return stack.enter_context(
        running_server(argv, port, workdir / f"{name}.log", "/healthz", env, 30.0, REPO_ROOT)
    )


def provision(
    gateway_url: str, tenants: int, shard_of: Callable[[str], str], shards: int
) -> tuple[list[str], list[str]]:
    """Store the safety policy, and tenants like full_pipeline's (the adapter, the policy,
    generous limits) until each of the `shards` holds `tenants / shards` of them (their ids
    are random, and a tenant's limits live on the shard of its id's hash slot); a key for each
    kept tenant: (tenant ids, key secrets)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    per_shard = tenants // shards
    held: dict[str, int] = {}
    ids, keys = [], []
    with httpx.Client(base_url=f"{gateway_url}/admin/v1", headers=headers, timeout=30) as admin:
        admin.put(f"/safety/policies/{POLICY}", json=SAFETY_POLICY).raise_for_status()
        for index in range(tenants * 20):
            if len(ids) == per_shard * shards:
                break
            tenant = admin.post(
                "/tenants",
                json={
                    "name": f"bench-scaling-{index}",
                    "models": {MODEL: {"base_model": MODEL, "adapter": ADAPTER}},
                    "default_model": MODEL,
                    "limits": GENEROUS_LIMITS,
                    "safety_policy": POLICY,
                },
            )
            tenant.raise_for_status()
            tenant_id = tenant.json()["id"]
            shard = shard_of(tenant_id)
            if held.get(shard, 0) == per_shard:
                continue  # that shard has its share: this tenant stays unused
            held[shard] = held.get(shard, 0) + 1
            key = admin.post("/keys", json={"tenant_id": tenant_id, "name": "bench"})
            key.raise_for_status()
            ids.append(tenant_id)
            keys.append(key.json()["secret"])
    if len(ids) != per_shard * shards:
        raise RuntimeError(f"could not spread {tenants} tenants over {shards} shards")
    return ids, keys


def check_all_on(gateways: list[ServerProcess], key: str) -> None:
    """Every instance answers the key, and refuses a prompt that the safety policy blocks."""
    headers = {"Authorization": f"Bearer {key}"}
    denied = {"model": MODEL, "messages": [{"role": "user", "content": "forbidden-benchmark-term"}]}
    for gateway in gateways:
        url = f"{gateway.url}/v1/chat/completions"
        ok = httpx.post(url, content=BODY, headers=headers, timeout=30)
        ok.raise_for_status()
        refused = httpx.post(url, json=denied, headers=headers, timeout=30)
        if refused.status_code == 200:
            raise RuntimeError(f"{gateway.url}: the safety policy is not enforced")


@contextmanager
def redis_nodes(topology: str, workdir: Path) -> Iterator[tuple[str, list[RedisNode]]]:
    directory = workdir / topology
    directory.mkdir()
    if topology == "single":
        server = start_redis_server(directory)
        try:
            port = int(server.url.rsplit(":", 1)[1])
            yield server.url, [RedisNode("redis", port, primary=True)]
        finally:
            server.stop()
        return
    with running_cluster(directory, primaries=3) as cluster:
        nodes = []
        for index, node in enumerate(cluster.primaries):
            nodes.append(RedisNode(f"primary-{index + 1}", node.port, True, node.slots))
        replicas = [node for node in cluster.nodes if not node.primary]
        for index, node in enumerate(replicas):
            nodes.append(RedisNode(f"replica-{index + 1}", node.port, primary=False))
        yield cluster.url, nodes


@contextmanager
def deployment(topology: str, plan: Plan, workdir: Path) -> Iterator[Deployment]:
    with ExitStack() as stack:
        url, nodes = stack.enter_context(redis_nodes(topology, workdir))
        upstream = standin(workdir, f"{topology}-standin-a", MAX_TOKENS, stack)
        replica = standin(workdir, f"{topology}-standin-b", MAX_TOKENS, stack)
        env = {
            "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
            "VLLM_GATEWAY_STORE__REDIS_URL": url,
            "VLLM_GATEWAY_STORE__REDIS_PREFIX": f"bench-scaling-{uuid.uuid4().hex[:8]}:",
            "VLLM_GATEWAY_AUTH__KEY_HASH_SECRET": uuid.uuid4().hex,
            "VLLM_GATEWAY_OBSERVABILITY__METRICS_ENABLED": "true",
            "VLLM_GATEWAY_SAFETY__POLICIES": json.dumps({POLICY: SAFETY_POLICY}),
            "VLLM_GATEWAY_LIMITS__REDIS_TIMEOUT_S": str(plan.limiter_timeout_s),
        }
        gateways = [
            start_gateway(workdir, f"{topology}-gateway-{i}", upstream.url, replica.url, env, stack)
            for i in range(1, max(INSTANCE_COUNTS) + 1)
        ]
        dep = Deployment(topology, nodes, gateways, [upstream, replica], [], [], workdir)
        shards = sum(node.primary for node in nodes)
        dep.tenant_ids, dep.keys = provision(gateways[0].url, plan.tenants, dep.shard_of, shards)
        check_all_on(gateways, dep.keys[0])
        yield dep


def run_wrk(
    gateways: list[ServerProcess], keys: list[str], concurrency: int, seconds: int, workdir: Path
) -> list[dict[str, int]]:
    """One wrk per gateway, all at once, `concurrency` connections split evenly between them."""
    script = workdir / "scaling.lua"
    script.write_text(WRK_SCRIPT)
    runs = []
    for index, gateway in enumerate(gateways):
        result = workdir / f"wrk-{uuid.uuid4().hex[:8]}.json"
        # each instance starts its rotation at another tenant
        rotated = keys[index:] + keys[:index]
        env = {
            **os.environ,
            "BENCH_BODY": BODY,
            "BENCH_KEYS": ",".join(rotated),
            "BENCH_RESULT": str(result),
        }
        argv = ["wrk", "--threads", "1", "--connections", str(concurrency // len(gateways))]
        argv += ["--duration", f"{seconds}s", "--timeout", "30s", "--script", str(script)]
        argv.append(f"{gateway.url}/v1/chat/completions")
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        runs.append((process, result))
    outcomes = []
    for process, result in runs:
        if process.wait(seconds + 30) != 0:
            raise RuntimeError(f"wrk exited with {process.returncode}")
        outcomes.append(json.loads(result.read_text()))
    return outcomes


def measure(dep: Deployment, instances: int, plan: Plan, round_index: int) -> Window:
    gateways = dep.gateways[:instances]
    run_wrk(gateways, dep.keys, plan.concurrency, plan.warmup_seconds, dep.workdir)
    redis_before = dep.samples()
    trouble_before = limiter_trouble(gateways)
    gateway_before = sum(tree_cpu_seconds(g.process.pid) for g in gateways)
    standin_before = sum(tree_cpu_seconds(s.process.pid) for s in dep.standins)
    client_before, busy_before, started = children_cpu_s(), machine_busy_s(), time.monotonic()
    outcomes = run_wrk(gateways, dep.keys, plan.concurrency, plan.seconds, dep.workdir)
    elapsed = time.monotonic() - started
    busy = machine_busy_s() - busy_before
    client_cpu = children_cpu_s() - client_before
    gateway_cpu = sum(tree_cpu_seconds(g.process.pid) for g in gateways) - gateway_before
    standin_cpu = sum(tree_cpu_seconds(s.process.pid) for s in dep.standins) - standin_before
    redis_deltas = dep.deltas(redis_before)
    trouble = limiter_trouble(gateways) - trouble_before
    seconds = max(o["duration_us"] for o in outcomes) / 1e6
    return Window(
        topology=dep.topology,
        instances=instances,
        round=round_index,
        seconds=seconds,
        requests=sum(o["requests"] for o in outcomes),
        errors=sum(o["non_2xx"] + o["socket_errors"] for o in outcomes),
        p50_ms=statistics.median(o["p50_us"] for o in outcomes) / 1e3,
        p99_ms=max(o["p99_us"] for o in outcomes) / 1e3,
        gateway_cpu_s=gateway_cpu,
        standin_cpu_s=standin_cpu,
        client_cpu_s=client_cpu,
        machine_busy_cores=busy / elapsed,
        limiter_fallbacks=trouble,
        redis=redis_deltas,
    )


def idle(dep: Deployment, seconds: int) -> dict[str, Any]:
    """What the four gateways cost with no requests: their background work, per second."""
    before = dep.samples()
    cpu_before = sum(tree_cpu_seconds(g.process.pid) for g in dep.gateways)
    time.sleep(seconds)
    cpu = sum(tree_cpu_seconds(g.process.pid) for g in dep.gateways) - cpu_before
    deltas = dep.deltas(before)
    commands: dict[str, float] = {}
    for node in deltas.values():
        if node["primary"]:
            for name, calls in node["commands"].items():
                commands[name] = commands.get(name, 0) + calls / seconds
    return {
        "seconds": seconds,
        "instances": len(dep.gateways),
        "gateway_cpu_cores": cpu / seconds,
        "redis_cpu_cores": {name: node["cpu_s"] / seconds for name, node in deltas.items()},
        "primary_commands_per_s": dict(sorted(commands.items(), key=lambda item: -item[1])),
    }


def run(plan: Plan) -> dict[str, Any]:
    topologies: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        workdir = Path(tmp)
        for topology in plan.topologies:
            with deployment(topology, plan, workdir) as dep:
                print(f"{topology}: {len(dep.gateways)} gateways up", flush=True)
                quiet = idle(dep, plan.idle_seconds)
                windows = []
                for round_index in range(1, plan.rounds + 1):
                    for instances in INSTANCE_COUNTS:
                        window = measure(dep, instances, plan, round_index)
                        windows.append(window.summary())
                        print(
                            f"  {instances} instance(s), round {round_index}: "
                            f"{window.rps:,.0f} req/s, "
                            f"{window.gateway_cpu_ms_per_request:.3f} gateway CPU-ms/req, "
                            f"{window.redis_totals()['commands_per_request']:.2f} Redis cmds/req",
                            flush=True,
                        )
                topologies[topology] = {
                    "nodes": [asdict(node) for node in dep.nodes],
                    "tenants_per_shard": dep.tenants_per_shard(),
                    "idle": quiet,
                    "windows": windows,
                }
    return topologies


def write_report(
    plan: Plan, command: str, host: dict[str, object], topologies: dict[str, Any], out: Path | None
) -> str:
    context = {
        "command": command,
        "machine": host,
        "gateway": machine.versions("-", "-")["vllm-gateway"],
        "redis": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "client": subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        .stdout.splitlines()[0]
        .split(" Copyright")[0],
        "plan": asdict(plan),
    }
    raw = {**context, "topologies": topologies}
    markdown = render(raw)
    if out is not None:
        (out / "scaling.json").write_text(json.dumps(raw, indent=2) + "\n")
        (out / "scaling.md").write_text(markdown)
    return markdown


def render(raw: dict[str, Any]) -> str:
    plan, host = raw["plan"], raw["machine"]
    lines = [
        "# Scaling out: gateway instances on one Redis and on a Redis Cluster",
        "",
        f"- Date: {host['date']}",
        f"- Command: `{raw['command']}`",
        f"- Machine: {host['nproc']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
        f"Linux {host['kernel']}, Python {host['python']}; shared with other work",
        f"- Versions: vllm-gateway {raw['gateway']}; {raw['redis']}; client {raw['client']}",
        f"- Each window: {plan['seconds']} s after a {plan['warmup_seconds']} s warm-up, "
        f"{plan['concurrency']} connections in all (split over the instances, one wrk each), "
        f"plain chat requests answered with {MAX_TOKENS} tokens, keys of {plan['tenants']} "
        f"tenants in rotation; {plan['rounds']} round(s) of 1, 2, 4 instances per topology.",
        "- Gateways: all on, as in bench/full_pipeline.py (key auth on the Redis store, Redis "
        "limits per tenant set far above what is sent, the safety policy enforced, LoRA routing "
        "over 2 stand-in replicas, metrics, access log), one worker each, one shared key prefix; "
        f"`limits.redis_timeout_s` {plan['limiter_timeout_s']} s (the default 0.05 s is exceeded "
        "on these 2 busy cores, and the limiter then skips Redis for a second: the last column "
        "counts such fallbacks).",
        "- Redis: single = one `redis-server`; cluster = 3 primaries + 3 replicas on loopback. "
        "Commands are INFO commandstats deltas: a script is one command, and so is each command "
        "it runs. Reads = `total_reads_processed` (socket reads: about one per round trip, "
        "pipelined commands share one). Redis CPU = `used_cpu_user + used_cpu_sys`.",
        "",
        "Cores: what each group of processes used during the window (CPU seconds / window); "
        "`other processes`: the rest of the machine's busy time, other people's work on it.",
        "",
        "**With 2 cores, 2 and 4 instances share the same 2 cores with the stand-ins, Redis and "
        "the clients**: req/s cannot grow with instances here, and does not. The figures that "
        "carry to a bigger deployment are per request: gateway CPU-ms (and so requests per "
        "gateway core-second), Redis commands, round trips and Redis CPU-µs, per shard.",
        "",
    ]
    lines += _summary_table(raw)
    for topology, data in raw["topologies"].items():
        windows = data["windows"]
        lines += [
            f"## {topology}",
            "",
            "| instances | round | req/s | errors | p50 ms | p99 ms | gateway CPU-ms/req | "
            "req per gateway core-s | Redis cmds/req | scripts/req | reads/req | Redis CPU-µs/req "
            "(net of idle) | replica CPU-µs/req | machine busy cores | gateways | stand-ins "
            "| Redis | wrk | other processes | limiter fallbacks |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for w in windows:
            prim, repl = w["primaries"], w["replicas"]
            net = net_redis_cpu_us(data, w)
            redis_cpu = sum(node["cpu_s"] for node in w["redis"].values())
            parts = (w["gateway_cpu_s"], w["standin_cpu_s"], redis_cpu, w["client_cpu_s"])
            cores = [part / w["seconds"] for part in parts]
            replica_cpu = f"{repl['cpu_us_per_request']:.1f}" if topology != "single" else "-"
            lines.append(
                f"| {w['instances']} | {w['round']} | {w['rps']:,.0f} | {w['errors']} | "
                f"{w['p50_ms']:.2f} | {w['p99_ms']:.2f} | {w['gateway_cpu_ms_per_request']:.3f} | "
                f"{w['requests_per_gateway_core_s']:,.0f} | {prim['commands_per_request']:.2f} | "
                f"{prim['scripts_per_request']:.3f} | {prim['reads_per_request']:.3f} | "
                f"{prim['cpu_us_per_request']:.1f} ({net:.1f}) | {replica_cpu} | "
                f"{w['machine_busy_cores']:.2f} | {' | '.join(f'{c:.2f}' for c in cores)} | "
                f"{w['machine_busy_cores'] - sum(cores):.2f} | {w['limiter_fallbacks']:.0f} |"
            )
        lines += ["", *_commands_table(windows), ""]
        if topology != "single":
            lines += [*_shard_table(data, windows), ""]
        quiet = data["idle"]
        background = ", ".join(
            f"{name} {rate:.1f}" for name, rate in list(quiet["primary_commands_per_s"].items())
        )
        redis_idle = ", ".join(
            f"{name} {cores:.3f}" for name, cores in quiet["redis_cpu_cores"].items()
        )
        lines += [
            f"Idle ({quiet['instances']} instances, {quiet['seconds']} s, no requests): "
            f"gateways {quiet['gateway_cpu_cores']:.3f} cores; Redis cores: {redis_idle}; "
            f"Redis commands/s on the primaries: {background or 'none'}.",
            "",
        ]
    return "\n".join(lines)


def net_redis_cpu_us(data: dict[str, Any], window: dict[str, Any]) -> float:
    """The primaries' CPU per request, less what they spent idle (cluster bus, the gateways'
    background work) over as long a time."""
    idle_cores = data["idle"]["redis_cpu_cores"]
    cpu_s = sum(
        node["cpu_s"] - idle_cores[name] * window["seconds"]
        for name, node in window["redis"].items()
        if node["primary"]
    )
    return 1e6 * cpu_s / max(1, window["requests"])


def _busiest_share(window: dict[str, Any]) -> float:
    """The busiest primary's part of the primaries' CPU."""
    cpu = [node["cpu_s"] for node in window["redis"].values() if node["primary"]]
    return max(cpu) / max(1e-9, sum(cpu))


def _summary_table(raw: dict[str, Any]) -> list[str]:
    """The per-request costs that carry over to other machines, median of the rounds."""
    lines = [
        "## Per request, median of the rounds",
        "",
        "| topology | instances | gateway CPU-ms | req per gateway core-s | Redis commands | "
        "scripts | round trips (reads) | Redis CPU-µs, net of idle | busiest primary's share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for topology, data in raw["topologies"].items():
        for instances in INSTANCE_COUNTS:
            windows = [w for w in data["windows"] if w["instances"] == instances]
            if not windows:
                continue
            cells = [
                statistics.median(w["gateway_cpu_ms_per_request"] for w in windows),
                statistics.median(w["requests_per_gateway_core_s"] for w in windows),
                statistics.median(w["primaries"]["commands_per_request"] for w in windows),
                statistics.median(w["primaries"]["scripts_per_request"] for w in windows),
                statistics.median(w["primaries"]["reads_per_request"] for w in windows),
                statistics.median(net_redis_cpu_us(data, w) for w in windows),
                statistics.median(_busiest_share(w) for w in windows),
            ]
            lines.append(
                f"| {topology} | {instances} | {cells[0]:.3f} | {cells[1]:,.0f} | "
                f"{cells[2]:.2f} | {cells[3]:.3f} | {cells[4]:.3f} | {cells[5]:.1f} | "
                f"{cells[6]:.0%} |"
            )
    return [*lines, ""]


def _commands_table(windows: list[dict[str, Any]]) -> list[str]:
    """Commands per request by name, over every window of the topology (primaries)."""
    requests = sum(w["requests"] for w in windows)
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    for w in windows:
        for node in w["redis"].values():
            if node["primary"]:
                for name, count in node["commands"].items():
                    calls[name] = calls.get(name, 0) + count
                    usec[name] = usec.get(name, 0) + node["usec"][name]
    lines = [
        "Commands on the primaries per request, all windows together (µs/call: commandstats' "
        "wall time, which counts the time Redis waited for a core on this busy machine; a "
        "script's includes the commands it runs):",
        "",
        "| command | per request | µs/call |",
        "|---|---|---|",
    ]
    for name, count in sorted(calls.items(), key=lambda item: -item[1]):
        if count / requests >= 0.001:
            lines.append(f"| {name} | {count / requests:.3f} | {usec[name] / count:.2f} |")
    return lines


def _shard_table(data: dict[str, Any], windows: list[dict[str, Any]]) -> list[str]:
    """How the work split over the primaries (the tenants' hash tags decide)."""
    lines = [
        "Per primary, all windows together:",
        "",
        "| node | tenants whose limits it holds | share of commands | share of Redis CPU |",
        "|---|---|---|---|",
    ]
    primaries = [n["name"] for n in data["nodes"] if n["primary"]]
    totals = {name: [0, 0.0] for name in primaries}
    for w in windows:
        for name in primaries:
            totals[name][0] += w["redis"][name]["commands_total"]
            totals[name][1] += w["redis"][name]["cpu_s"]
    all_commands = sum(t[0] for t in totals.values()) or 1
    all_cpu = sum(t[1] for t in totals.values()) or 1.0
    for name, (commands, cpu) in totals.items():
        lines.append(
            f"| {name} | {data['tenants_per_shard'][name]} | {commands / all_commands:.0%} | "
            f"{cpu / all_cpu:.0%} |"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s windows, 1 round, printed only")
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per window")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 1, 2, 4 instances")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in all")
    parser.add_argument("--tenants", type=int, default=9, help="tenants (keys) in rotation")
    parser.add_argument(
        "--topologies", default="single,cluster", help="comma-separated: single, cluster"
    )
    parser.add_argument(
        "--limiter-timeout",
        type=float,
        default=LIMITER_TIMEOUT_S,
        help="limits.redis_timeout_s of the gateways (theirs by default: 0.05)",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    return parser.parse_args()


def main() -> None:
    stop_on_sigterm()
    args = parse_args()
    plan = Plan(
        seconds=2 if args.quick else args.seconds,
        warmup_seconds=1,
        idle_seconds=1 if args.quick else 3,
        rounds=1 if args.quick else args.rounds,
        concurrency=args.concurrency,
        tenants=args.tenants,
        topologies=tuple(args.topologies.split(",")),
        limiter_timeout_s=args.limiter_timeout,
    )
    out = args.out or (None if args.quick else RESULTS)
    command = "python -m bench.scaling " + " ".join(sys.argv[1:])
    host = machine.describe()  # its date: when the run began
    markdown = write_report(plan, command.strip(), host, run(plan), out)
    print(markdown if out is None else f"wrote {out / 'scaling.md'} and scaling.json")


if __name__ == "__main__":
    main()
