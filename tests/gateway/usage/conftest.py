"""The ledger's two stores, each with a way to make it fail, for one parametrized suite.

Redis is a redis-server of this module's own (from tests/fixtures/redis.py), so tests may stop
and restart it by PID, or freeze it, without disturbing anyone else's Redis; each test writes
under a fresh prefix. SQLite is a file per test; its outage is another connection holding the
file's write lock. `Clock` sets the ledger's time, so tests choose which UTC day a request
falls on.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.usage.backend import UsageBackend
from gateway.usage.ledger import UsageLedger
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.redis import OwnRedis

# Short, so that a frozen Redis or a locked file fails a flush quickly.
STORE_TIMEOUT_S = 0.3
DAY_1, DAY_2, DAY_3 = "2030-01-01", "2030-01-02", "2030-01-03"


def noon(day: str) -> float:
    return datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()


class Clock:
    """The ledger's clock, set by the test: which UTC day a request falls on."""

    def __init__(self, day: str = DAY_1) -> None:
        self.now = noon(day)

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    with OwnRedis(tmp_path_factory.mktemp("usage-redis")) as server:
        yield server


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
