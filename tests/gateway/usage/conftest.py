"""The ledger's two stores, each with a way to make it fail, for one parametrized suite.

Redis is a redis-server of this module's own (from tests/fixtures/redis.py), so tests may stop
and restart it by PID, or freeze it, without disturbing anyone else's Redis; each test writes
under a fresh prefix. SQLite is a file per test; its outage is another connection holding the
file's write lock. `Clock` sets the ledger's time, so tests choose which UTC day a request
falls on.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.usage.backend import UsageBackend
from gateway.usage.ledger import UsageLedger
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis import answers_ping, start_redis_server

# Short, so that a frozen Redis or a locked file fails a flush quickly.
STORE_TIMEOUT_S = 0.3
RESTART_TIMEOUT_S = 15.0
DAY_1, DAY_2, DAY_3 = "2030-01-01", "2030-01-02", "2030-01-03"


def noon(day: str) -> float:
    return datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()


class Clock:
    """The ledger's clock, set by the test: which UTC day a request falls on."""

    def __init__(self, day: str = DAY_1) -> None:
        self.now = noon(day)

    def __call__(self) -> float:
        return self.now


class OwnRedis:
    """A redis-server that tests may stop and start again, by PID, keeping its data."""

    def __init__(self, log_dir: Path) -> None:
        self._server = start_redis_server(log_dir)
        self.url = self._server.url

    @contextmanager
    def down(self) -> Iterator[None]:
        """Save the data, stop the server; after the block, start it again on its port."""
        with redis.Redis.from_url(self.url) as client:
            client.save()
        self._server.stop()
        try:
            yield
        finally:
            self._restart()

    def _restart(self) -> None:
        # The same command line: same port, and the same --dir, whose dump.rdb it loads.
        previous = self._server
        with previous.log_path.open("ab") as log_file:
            process = subprocess.Popen(
                previous.process.args, stdout=log_file, stderr=subprocess.STDOUT
            )
        self._server = ServerProcess(process, self.url, previous.log_path)
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while not answers_ping(self.url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not come back:\n{self._server.log()}")
            time.sleep(0.05)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP: connections are accepted and commands queue up, but nothing answers."""
        self._server.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._server.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("usage-redis"))
    yield server
    server.stop()


@dataclass
class LedgerStore:
    """One store for the ledger: new backends on the same data, and an outage of it."""

    name: str
    open_backend: Callable[[], UsageBackend]
    outage: Callable[[], AbstractContextManager[None]]

    @asynccontextmanager
    async def opened(self, **options: Any) -> AsyncIterator[UsageLedger]:
        """A ledger on a new backend, closed (so flushed) when the block ends."""
        ledger = UsageLedger(self.open_backend(), **options)
        try:
            yield ledger
        finally:
            await ledger.close()


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Hold the SQLite file's write lock from another connection."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def redis_ledger_store(own_redis: OwnRedis) -> LedgerStore:
    """The module's own Redis, under a fresh prefix; its outage: stopped and restarted."""
    prefix = f"test-{uuid.uuid4().hex}:"
    return LedgerStore(
        "redis",
        lambda: RedisUsageBackend(own_redis.url, prefix, STORE_TIMEOUT_S),
        own_redis.down,
    )


def sqlite_ledger_store(path: Path) -> LedgerStore:
    """A SQLite file; its outage: another connection holding the write lock."""
    return LedgerStore(
        "sqlite", lambda: SqliteUsageBackend(path, STORE_TIMEOUT_S), lambda: write_locked(path)
    )


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerStore:
    if request.param == "redis":
        return redis_ledger_store(request.getfixturevalue("own_redis"))
    return sqlite_ledger_store(tmp_path / "gateway.db")
