"""A redis-server for the benchmarks and the tests: whether one answers, starting a throwaway
one, and deleting a run's keys. Here, not in tests/fixtures (which re-exports it), because the
benchmarks run without tests/."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import redis

from bench.processes import ServerProcess, free_port
from gateway.redis_client import redis_client

LOCAL_REDIS_URL = "redis://127.0.0.1:6379"
START_TIMEOUT_S = 15.0


class RedisState(Enum):
    UP = "up"
    LOADING = "loading"  # answers -LOADING while it reads its data (redis-py: BusyLoadingError)
    DOWN = "down"


def redis_state(url: str) -> RedisState:
    try:
        with redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            client.ping()
    except redis.BusyLoadingError:
        return RedisState.LOADING
    except redis.RedisError:
        return RedisState.DOWN
    return RedisState.UP


def answers_ping(url: str) -> bool:
    return redis_state(url) is RedisState.UP


def wait_for_state(server: ServerProcess, timeout_s: float, *wanted: RedisState) -> RedisState:
    """Poll until `server` is in one of the `wanted` states; that state. Fails with the
    server's log when it exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while (state := redis_state(server.url)) not in wanted:
        if server.process.poll() is not None or time.monotonic() > deadline:
            names = " or ".join(wanted_state.value for wanted_state in wanted)
            raise RuntimeError(f"redis-server is not {names}:\n{server.log()}")
        time.sleep(0.05)
    return state


def launch_redis_server(
    port: int, directory: Path, *, append_only: bool, extra_args: Sequence[str] = ()
) -> ServerProcess:
    """Start redis-server on `port`, its files (and log) in `directory`, without waiting for
    it. No persistence, unless `append_only`: then every write goes to an AOF in `directory`,
    fsynced every second, which a server started again there loads."""
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes" if append_only else "no", "--dir", str(directory)]
    log_path = directory / f"redis-{port}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([*argv, *extra_args], stdout=log_file, stderr=subprocess.STDOUT)
    return ServerProcess(process, f"redis://127.0.0.1:{port}", log_path)


def start_redis_server(
    log_dir: Path, timeout: float = START_TIMEOUT_S, *, append_only: bool = False
) -> ServerProcess:
    """Start a throwaway redis-server on a free port and wait until it answers PING."""
    server = launch_redis_server(free_port(), log_dir, append_only=append_only)
    try:
        wait_for_state(server, timeout, RedisState.UP)
    except RuntimeError:
        server.stop()
        raise
    return server


async def delete_prefixed_keys(url: str, prefix: str) -> None:
    """Delete the keys under `prefix`, on any topology (a Cluster: on every primary)."""
    client = redis_client(url, 5.0)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
