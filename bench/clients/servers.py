"""The servers of the matrix: real vLLM CPU (the launcher's demo) and gateways in front of it.

Everything runs as child processes on loopback ports, started with the project's own venvs
(the clients' venv has neither vLLM nor the gateway's dependencies): vLLM through
`.venv/bin/vllm-server up --demo`, a gateway as `.venv/bin/python -m gateway.cli serve` from
a source tree (this checkout, or a worktree of an older commit on PYTHONPATH). Each gateway
gets its own SQLite file, an admin key, and a tenant whose public model name is not vLLM's.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import REPO_ROOT, ServerProcess, free_port, start_server

GATEWAY_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
VLLM_SERVER = REPO_ROOT / ".venv" / "bin" / "vllm-server"
ADMIN_KEY = "admin-clients-matrix-0123456789"
TENANT = "acme"
# vLLM serves the tiny model as "base" (and adapters tenant-a..c); the tenant sees its own names
PUBLIC_MODEL = "acme-chat"
TENANT_MODELS = {
    PUBLIC_MODEL: {"base_model": "base"},
    "acme-lora": {"base_model": "base", "adapter": "tenant-a"},
}
VLLM_MODEL = "base"


def start_vllm(log_dir: Path, timeout: float = 300.0) -> ServerProcess:
    """The launcher's CPU demo: the tiny model, adapters tenant-a..c, tool calling on."""
    port = free_port()
    argv = [str(VLLM_SERVER), "up", "--demo", "--port", str(port)]
    argv += ["--log", str(log_dir / "vllm.log")]
    return start_server(argv, port, log_dir / "vllm-launcher.log", "/health", timeout=timeout)


@dataclass
class Gateway:
    """A gateway child process and the tenant key made for it."""

    server: ServerProcess
    api_key: str
    source: Path

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


def start_gateway(name: str, source: Path, upstream: str, log_dir: Path) -> Gateway:
    """`gateway.cli serve` from the source tree `source` in front of `upstream`, with the
    tenant of TENANT_MODELS and a key for it."""
    port = free_port()
    env = {
        "PYTHONPATH": str(source),
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(log_dir / f"{name}.db"),
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
    }
    argv = [str(GATEWAY_PYTHON), "-m", "gateway.cli", "serve", "--port", str(port)]
    argv += ["--upstream", upstream]
    log_path = log_dir / f"{name}.log"
    server = start_server(argv, port, log_path, "/healthz", env, timeout=60, cwd=source)
    try:
        return Gateway(server, provision(server.url), source)
    except BaseException:
        server.stop()
        raise


def provision(url: str) -> str:
    """Create the tenant through the admin API, as an operator would; its key's secret."""
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=url + "/admin/v1", headers=headers, timeout=30) as admin:
        tenant = admin.post("/tenants", json={"name": TENANT, "models": TENANT_MODELS})
        tenant.raise_for_status()
        key = admin.post("/keys", json={"tenant_id": tenant.json()["id"], "name": "clients"})
        key.raise_for_status()
        return str(key.json()["secret"])


def gateway_source_file(python: Path, source: Path) -> str:
    """Where `gateway` is imported from when run as start_gateway runs it: a check that the
    older tree's code, not this checkout's editable install, is what serves."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    found = subprocess.run(
        [str(python), "-c", "import gateway; print(gateway.__file__)"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


def ensure_worktree(path: Path, commit: str) -> bool:
    """A detached worktree of `commit` at `path`; True if this call created it."""
    if path.exists():
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wanted = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", commit],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if head != wanted:
            raise SystemExit(f"{path} is at {head[:9]}, not {commit}: remove it or pass another")
        return False
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(path), commit],
        check=True,
        capture_output=True,
    )
    return True


def remove_worktree(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(path)],
        check=False,
        capture_output=True,
    )
