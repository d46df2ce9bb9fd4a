"""Limiters to test: the in-process one and the Redis one (a real Redis), made alike.

`make_limiter` builds a `Limiter` of the test's kind: "local", or a Redis topology ("redis",
"redis-sentinel", "redis-cluster"); Redis limiters share one key prefix per test, so several
of them act like several gateway instances on one Redis. `own_redis` is a
redis-server of the test's own, which the test may stop, restart (same port) or slow down.
`gateways_on_redis` is several real gateway processes sharing one Redis (keys and limits);
`gateways_on_every_topology` the same on one server, under Sentinel and on a Cluster.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.limits import Limiter, open_limiter
from gateway.settings import DefaultLimits, LimitsSettings, StoreSettings
from gateway.tenancy.auth import Principal
from gateway.tenancy.models import ApiKey, Limits, Tenant
from tests.fixtures.gateway import Gateway, gateways_sharing_redis
from tests.fixtures.processes import ServerProcess, free_port
from tests.fixtures.redis import answers_ping, delete_prefixed_keys
from tests.fixtures.redis_topologies import TOPOLOGIES, topology_url

MakeLimiter = Callable[..., Awaitable[Limiter]]
GATEWAYS = 3  # gateway processes on one Redis in `gateways_on_redis`


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "limits_e2e: limits through real gateway processes (needs the pipeline wiring)"
    )


def principal(
    tenant_limits: Limits | None = None,
    key_limits: Limits | None = None,
    *,
    tenant_id: str = "ten_1",
    key_id: str = "key_1",
) -> Principal:
    tenant = Tenant(tenant_id, f"tenant-{tenant_id}", limits=tenant_limits or Limits())
    key = ApiKey(
        key_id, tenant_id, f"key-{key_id}", "sk-test", "hash", limits=key_limits or Limits()
    )
    return Principal.of(key, tenant)


@pytest.fixture(params=["local", "redis"])
def limiter_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture(loop_scope="function")
async def make_limiter(
    limiter_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[MakeLimiter]:
    """Started limiters of the test's kind; `redis_url=` makes a Redis one on that server."""
    prefix = f"test-limits-{uuid.uuid4().hex}:"
    made: list[tuple[Limiter, str | None]] = []

    async def make(
        defaults: Limits | None = None, *, redis_url: str | None = None, **settings: object
    ) -> Limiter:
        if redis_url is None and limiter_kind != "local":
            redis_url = topology_url(request, limiter_kind)
        limits = LimitsSettings(
            defaults=DefaultLimits(**asdict(defaults or Limits())),
            redis_timeout_s=settings.pop("redis_timeout_s", 1.0),
            **settings,
        )
        limiter = open_limiter(limits, StoreSettings(redis_url=redis_url, redis_prefix=prefix))
        await limiter.start()
        made.append((limiter, redis_url))
        return limiter

    yield make
    for limiter, _ in made:
        await limiter.close()
    for url in {url for _, url in made if url is not None}:
        if url.startswith("redis+") or answers_ping(url):  # a test may have stopped its own
            await delete_prefixed_keys(url, prefix)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


class RedisServer:
    """A redis-server on a fixed port that a test can stop and start again."""

    def __init__(self, log_dir: Path, port: int) -> None:
        self.url = f"redis://127.0.0.1:{port}"
        self._port = port
        self._log_dir = log_dir
        self._process: ServerProcess | None = None

    def start(self, timeout: float = 15.0) -> None:
        log_path = self._log_dir / f"redis-{self._port}.log"
        argv = ["redis-server", "--port", str(self._port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self._log_dir)]
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
        self._process = ServerProcess(process, self.url, log_path)
        deadline = time.monotonic() + timeout
        while not answers_ping(self.url):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not come up:\n{self._process.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


@pytest.fixture
def gateways_on_redis(
    standin: ServerProcess, redis_url: str, tmp_path: Path
) -> Iterator[list[Gateway]]:
    with gateways_sharing_redis(standin.url, redis_url, tmp_path, GATEWAYS) as gateways:
        yield gateways


@pytest.fixture(scope="module", params=TOPOLOGIES)
def gateways_on_every_topology(
    request: pytest.FixtureRequest,
    standin: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Gateway]]:
    """`GATEWAYS` gateway processes on one Redis of each topology, shared by the module's
    tests (each makes keys of its own). Keys stay cached for a minute: only an invalidation
    makes an instance see a change sooner."""
    url = topology_url(request, request.param)
    log_dir = tmp_path_factory.mktemp(f"gateways-{request.param}")
    with gateways_sharing_redis(
        standin.url, url, log_dir, GATEWAYS, auth__key_cache_ttl_s="60"
    ) as gateways:
        yield gateways
