"""The ledger's three stores, each with a way to make it fail, for one parametrized suite; and
requests as the app hands them to the ledger.

Redis is a redis-server of this module's own (from tests/fixtures/redis.py), so tests may stop
and restart it by PID, or freeze it, without disturbing anyone else's Redis; each test writes
under a fresh prefix. SQLite is a file per test; its outage is another connection holding the
file's write lock. Postgres is the session's test database, emptied per test
(tests/fixtures/postgres.py); its outage is another connection holding the records table's
lock. Each ledger's log is in a directory of the test's own. `Clock` sets the
ledger's time, so tests choose which UTC day a request falls on.
"""

from __future__ import annotations

import argparse
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway.admin.cli import ADMIN_KEY_ENV, URL_ENV
from gateway.core.asgi import Message
from gateway.core.context import RequestContext
from gateway.postgres.database import PostgresDatabase
from gateway.usage.backend import UsageBackend
from gateway.usage.ledger import Delivery, UsageLedger
from gateway.usage.postgres_backend import PostgresUsageBackend
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from gateway.usage.wal import WriteAheadLog
from tests.fixtures.gateway import ADMIN_KEY
from tests.fixtures.redis import OwnRedis

# Short, so that a frozen Redis or a locked file fails a flush quickly.
STORE_TIMEOUT_S = 0.3
FSYNC_INTERVAL_S = 0.005
DAY_1, DAY_2, DAY_3 = "2030-01-01", "2030-01-02", "2030-01-03"
CHAT = "/v1/chat/completions"


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


def inference(
    tenant_id: str | None,
    key_id: str | None,
    model: str | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    status: int = 200,
    **context: Any,
) -> RequestContext:
    """A request as the pipeline leaves it: who, which model, its usage and status."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    context.setdefault("request_id", uuid.uuid4().hex)
    return RequestContext(
        endpoint=CHAT,
        tenant_id=tenant_id,
        key_id=key_id,
        public_model=model,
        usage=usage if prompt_tokens or completion_tokens else None,
        status=status,
        **context,
    )


async def _nowhere(message: Message) -> None:
    pass


def finish(ledger: UsageLedger, ctx: RequestContext, seconds: float = 0.01) -> Delivery:
    """The request ended, nothing having been sent through its delivery."""
    delivery = ledger.delivery(ctx, _nowhere)
    ledger.finished(delivery, seconds)
    return delivery


def record(ledger: UsageLedger, *args: Any, **context: Any) -> None:
    """`inference(*args, **context)`, finished."""
    finish(ledger, inference(*args, **context))


async def answer_starts(ledger: UsageLedger, ctx: RequestContext) -> Delivery:
    """The answer's start sent through the request's delivery."""
    delivery = ledger.delivery(ctx, _nowhere)
    await delivery({"type": "http.response.start", "status": ctx.status, "headers": []})
    return delivery


async def events_sent(delivery: Delivery) -> None:
    await delivery({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})


def new_ledger(backend: UsageBackend, wal_dir: Path, **options: Any) -> UsageLedger:
    return UsageLedger(backend, WriteAheadLog(wal_dir, FSYNC_INTERVAL_S), **options)


@dataclass
class LedgerStore:
    """One store for the ledger: new backends on the same data, and an outage of it."""

    name: str
    open_backend: Callable[[], UsageBackend]
    outage: Callable[[], AbstractContextManager[None]]
    wal_dir: Path

    @asynccontextmanager
    async def opened(self, **options: Any) -> AsyncIterator[UsageLedger]:
        """A started ledger on a new backend, closed (so flushed) when the block ends."""
        ledger = new_ledger(self.open_backend(), self.wal_dir, **options)
        await ledger.start()
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


def redis_ledger_store(own_redis: OwnRedis, wal_dir: Path) -> LedgerStore:
    """The module's own Redis, under a fresh prefix; its outage: stopped and restarted."""
    prefix = f"test-{uuid.uuid4().hex}:"
    return LedgerStore(
        "redis",
        lambda: RedisUsageBackend(own_redis.url, prefix, STORE_TIMEOUT_S),
        own_redis.down,
        wal_dir,
    )


def sqlite_ledger_store(path: Path, wal_dir: Path) -> LedgerStore:
    """A SQLite file; its outage: another connection holding the write lock."""
    return LedgerStore(
        "sqlite",
        lambda: SqliteUsageBackend(path, STORE_TIMEOUT_S),
        lambda: write_locked(path),
        wal_dir,
    )


@contextmanager
def records_locked(url: str) -> Iterator[None]:
    """Hold the records table's lock from another connection: every write waits on it."""
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE usage_records IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()


def postgres_ledger_store(url: str, wal_dir: Path) -> LedgerStore:
    """The test's Postgres database; its outage: the records table locked by another."""
    return LedgerStore(
        "postgres",
        lambda: PostgresUsageBackend(PostgresDatabase(url, STORE_TIMEOUT_S), STORE_TIMEOUT_S),
        lambda: records_locked(url),
        wal_dir,
    )


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerStore:
    if request.param == "redis":
        return redis_ledger_store(request.getfixturevalue("own_redis"), tmp_path / "wal")
    if request.param == "postgres":
        return postgres_ledger_store(request.getfixturevalue("postgres_url"), tmp_path / "wal")
    return sqlite_ledger_store(tmp_path / "gateway.db", tmp_path / "wal")


CliRun = Callable[..., tuple[int, str, str]]


def cli_against(
    url: str,
    command: str,
    add_commands: Callable[[Any], None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> CliRun:
    """`run(*argv)` runs `vllm-gateway <command> *argv` against the admin API at `url`:
    (exit code, stdout, stderr)."""
    monkeypatch.setenv(URL_ENV, url)
    monkeypatch.setenv(ADMIN_KEY_ENV, ADMIN_KEY)

    def run(*argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="vllm-gateway")
        add_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args([command, *argv])
        code = args.func(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_400_naming(response: httpx.Response, param: str) -> None:
    """An admin API refusal in OpenAI's error format, naming the bad parameter."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["message"]
