"""The gateway with every feature on, and with everything off, as child processes for the
full benchmark (bench/full.py) and the soak (bench/soak.py).

"On": key auth with a Redis store (a unique key prefix, deleted afterwards), Redis rate limits
per tenant set generously (measured, never hit), a safety policy with an input and an output
rule (in the settings, and stored through the admin API where it has a store) named by the
tenant, the tenant's public model routed to
a LoRA adapter that both stand-in replicas preload, Prometheus metrics and the access log.
"Off": `auth.enabled=false`, metrics and access log off, one upstream, the model passed through.
Either can be launched from another source tree (`source`, e.g. an earlier commit's `git
archive`): the child runs there, so `python -m gateway.cli` imports that tree's `gateway`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import REPO_ROOT, ServerProcess, free_port, running_server
from bench.redis_server import delete_prefixed_keys
from bench.servers import MODEL, Target

REDIS_URL = "redis://127.0.0.1:6379"
ADAPTER = "bench-lora"
ADMIN_KEY = "bench-admin-key"
POLICY = "bench-safety"
# Far above what 2 cores can send: the limiter's Redis round trips are measured, never a 429.
GENEROUS_LIMITS = {
    "requests_per_minute": 100_000_000,
    "tokens_per_minute": 1_000_000_000,
    "max_concurrent": 100_000,
    "tokens_per_day": 10_000_000_000,
}
# One input and one output rule: a deny term the benchmark prompt never contains, and a
# redaction of e-mail addresses that the stand-in's answers never contain, so every request
# is scanned both ways and none is changed.
SAFETY_POLICY = {
    "description": "benchmark: scan input and output, match nothing",
    "rules": [
        {
            "name": "deny-input",
            "detector": "deny_terms",
            "direction": "input",
            "action": "block",
            "terms": ["forbidden-benchmark-term"],
        },
        {
            "name": "redact-output-email",
            "detector": "email",
            "direction": "output",
            "action": "redact",
        },
    ],
}


@dataclass(frozen=True)
class FullPipeline:
    """What the full gateway was set up with: the admin API's answer to storing the safety
    policy ("stored", or its error), and whether a prompt the policy blocks was refused."""

    target: Target
    redis_prefix: str
    safety_admin_reply: str
    safety_enforced: bool


def standin(workdir: Path, name: str, max_tokens: int, stack: ExitStack) -> ServerProcess:
    """A stand-in vLLM that preloads the benchmark adapter, so either replica can serve it."""
    port = free_port()
    argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--max-tokens", str(max_tokens)]
    argv += ["--lora", f"{ADAPTER}=/bench/{ADAPTER}"]
    return stack.enter_context(running_server(argv, port, workdir / f"{name}.log"))


def _gateway(
    workdir: Path,
    name: str,
    upstream: str,
    env: dict[str, str],
    stack: ExitStack,
    source: Path,
) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--upstream", upstream]
    log_path = workdir / f"{name}.log"
    return stack.enter_context(
        running_server(argv, port, log_path, ready_path="/healthz", env=env, cwd=source)
    )


def imported_gateway(pid: int) -> Path:
    """The `gateway/__init__.py` that the gateway child `pid` runs. `python -m` puts the
    child's working directory first on sys.path, ahead of the venv's editable install (its
    finder comes after the path finder), so the same interpreter started there resolves
    `import gateway` to the same file."""
    probe = subprocess.run(
        [sys.executable, "-c", "import gateway; print(gateway.__file__)"],
        cwd=Path(f"/proc/{pid}/cwd").resolve(),
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(probe.stdout.strip())


def start_off(
    workdir: Path,
    upstream: str,
    stack: ExitStack,
    name: str = "gateway-off",
    source: Path = REPO_ROOT,
) -> Target:
    env = {
        "VLLM_GATEWAY_AUTH__ENABLED": "false",
        "VLLM_GATEWAY_OBSERVABILITY__METRICS_ENABLED": "false",
        "VLLM_GATEWAY_OBSERVABILITY__ACCESS_LOG": "false",
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(workdir / f"{name}.db"),
    }
    server = _gateway(workdir, name, upstream, env, stack, source)
    return Target(name, server.url, None, server.process.pid)


@contextmanager
def running_full(
    workdir: Path,
    upstream: str,
    replica: str,
    name: str = "gateway-full",
    settings: dict[str, str] | None = None,
    source: Path = REPO_ROOT,
) -> Iterator[FullPipeline]:
    """Run the all-on gateway from the source tree `source` over two replicas (plus
    `settings`, environment overrides); once it has stopped, its Redis keys go."""
    prefix = f"bench-{uuid.uuid4().hex[:12]}:"
    env = {
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
        "VLLM_GATEWAY_STORE__REDIS_URL": REDIS_URL,
        "VLLM_GATEWAY_STORE__REDIS_PREFIX": prefix,
        "VLLM_GATEWAY_AUTH__KEY_HASH_SECRET": uuid.uuid4().hex,
        "VLLM_GATEWAY_UPSTREAM__REPLICAS": json.dumps([replica]),
        "VLLM_GATEWAY_OBSERVABILITY__METRICS_ENABLED": "true",
        # In the settings too, so the tenant can name it where the admin API has no store.
        "VLLM_GATEWAY_SAFETY__POLICIES": json.dumps({POLICY: SAFETY_POLICY}),
        **(settings or {}),
    }
    try:
        with ExitStack() as stack:
            server = _gateway(workdir, name, upstream, env, stack, source)
            key, admin_reply = _provision(server.url)
            target = Target(name, server.url, f"Bearer {key}", server.process.pid)
            yield FullPipeline(target, prefix, admin_reply, _safety_enforced(target))
    finally:
        asyncio.run(delete_prefixed_keys(REDIS_URL, prefix))


def _provision(gateway_url: str) -> tuple[str, str]:
    """Store the safety policy through the admin API, and a tenant that names it, whose public
    model `MODEL` is the adapter, with generous limits; return a key's secret and the admin
    API's answer to the policy."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=f"{gateway_url}/admin/v1", headers=headers, timeout=30) as admin:
        policy = admin.put(f"/safety/policies/{POLICY}", json=SAFETY_POLICY)
        admin_reply = "stored" if policy.is_success else f"{policy.status_code} {policy.text}"
        tenant = admin.post(
            "/tenants",
            json={
                "name": "bench-full",
                "models": {MODEL: {"base_model": MODEL, "adapter": ADAPTER}},
                "default_model": MODEL,
                "limits": GENEROUS_LIMITS,
                "safety_policy": POLICY,
            },
        )
        tenant.raise_for_status()
        key = admin.post("/keys", json={"tenant_id": tenant.json()["id"], "name": "bench-full"})
        key.raise_for_status()
        return key.json()["secret"], admin_reply


def _safety_enforced(target: Target) -> bool:
    """Whether the gateway applies the policy: a prompt with the denied term must not pass."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "say forbidden-benchmark-term"}],
        "max_tokens": 4,
    }
    reply = httpx.post(target.chat_url, json=body, headers=target.headers(), timeout=30)
    return reply.status_code != 200


def safety_status(enforced: bool, admin_reply: str) -> str:
    """One sentence for the reports: whether the policy's cost is in the numbers."""
    if enforced:
        return "enforced (a prompt with the denied term is refused)"
    return (
        "configured (settings; admin API: "
        f"{admin_reply[:160]}) and named by the tenant, but NOT enforced: a prompt with the "
        "denied term passes, so safety is not wired into the request pipeline yet and its "
        "cost is not in these numbers"
    )
