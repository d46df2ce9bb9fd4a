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
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A child server process, its root URL and its log."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def wait_ready(self, path: str, timeout: float) -> None:
        """Return once GET `path` answers 200; raise with the log's tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to this process's PID, SIGKILL if it is still there after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(
    name: str, argv: list[str], log_path: Path, port: int, cwd: Path, env: dict[str, str]
) -> Server:
    """Start `argv` in `cwd` with output to `log_path`; it is to serve on loopback `port`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd, env=env
        )
    return Server(name, process, f"http://127.0.0.1:{port}", log_path)


def start_vllm(log_dir: Path, timeout: float = 300.0) -> Server:
    """The launcher's CPU demo: the tiny model, adapters tenant-a..c, tool calling on."""
    port = free_port()
    argv = [str(VLLM_SERVER), "up", "--demo", "--port", str(port)]
    argv += ["--log", str(log_dir / "vllm.log")]
    server = spawn("vllm", argv, log_dir / "vllm-launcher.log", port, REPO_ROOT, dict(os.environ))
    try:
        server.wait_ready("/health", timeout)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Gateway:
    """A gateway child process and the tenant key made for it."""

    server: Server
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
        **os.environ,
        "PYTHONPATH": str(source),
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(log_dir / f"{name}.db"),
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
    }
    argv = [str(GATEWAY_PYTHON), "-m", "gateway.cli", "serve", "--port", str(port)]
    argv += ["--upstream", upstream]
    server = spawn(name, argv, log_dir / f"{name}.log", port, source, env)
    try:
        server.wait_ready("/healthz", 60)
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
