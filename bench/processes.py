"""Start real servers as child processes on free loopback ports, wait for them, stop exactly
those; and read which gateway worker holds which connection (Linux /proc).

The benchmarks run from a copy of the project without tests/ (the GPU machine gets a wheel and
bench/), so these helpers live here and tests/fixtures re-exports them. Every wait on a server
checks that its process is still alive: a server that died at start ends the wait at once, with
the tail of its log, instead of after the whole timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(log_path: Path | None, chars: int = LOG_TAIL_CHARS) -> str:
    """The last `chars` of a server's log, for an error message ("" when there is none)."""
    if log_path is None or not log_path.exists():
        return ""
    with log_path.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - chars))
        return log.read().decode(errors="replace")


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_ready(
    url: str,
    timeout_s: float,
    alive: Callable[[], bool],
    log_path: Path | None = None,
    what: str = "server",
    interval_s: float = 0.1,
) -> None:
    """Poll GET `url` until it answers 200. Fails at once, with the log's tail, when `alive()`
    says the server's process is gone; after `timeout_s` otherwise (RuntimeError, both)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive():
            raise RuntimeError(f"{what} exited before {url} answered:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            tail = log_tail(log_path)
            raise RuntimeError(f"{what}: {url} not ready after {timeout_s:.0f} s:\n{tail}")
        time.sleep(interval_s)


@dataclass
class ServerProcess:
    """A child server: its process, its base URL and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_server(
    argv: Sequence[str],
    port: int,
    log_path: Path,
    ready_path: str = "/health",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path = REPO_ROOT,
) -> ServerProcess:
    """Start `argv` in `cwd` and wait until GET `ready_path` answers 200, or fail with its
    log's tail."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until_ready(
            server.url + ready_path,
            timeout,
            lambda: process.poll() is None,
            log_path,
            what=str(argv[0]),
        )
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_server(
    argv: Sequence[str],
    port: int,
    log_path: Path,
    ready_path: str = "/health",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path = REPO_ROOT,
) -> Iterator[ServerProcess]:
    server = start_server(argv, port, log_path, ready_path, env, timeout, cwd)
    try:
        yield server
    finally:
        server.stop()


def start_standin(log_dir: Path, *extra_args: str) -> ServerProcess:
    """Start `vllm-server standin` on a free port; `extra_args` go to its command line."""
    port = free_port()
    argv = [PYTHON, "-m", "vllm_server.cli", "standin", "--port", str(port), *extra_args]
    return start_server(argv, port, log_dir / f"standin-{port}.log")


def worker_pids(parent: int) -> list[int]:
    """The uvicorn workers of the gateway process `parent`: its children that
    multiprocessing spawned (not its resource tracker)."""
    pids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if b"spawn_main" in cmdline:
                pids.append(child)
    return sorted(pids)


def connections_per_worker(pids: list[int], port: int) -> list[int]:
    """How many established TCP connections on local port `port` each process holds."""
    inodes = _established_on(port)
    counts = []
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                held += 1
        counts.append(held)
    return counts


def _established_on(port: int) -> set[int]:
    """The socket inodes of the established TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes
