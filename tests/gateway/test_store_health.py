"""A store that cannot answer becomes StoreUnavailable (a 503), once logged; a bug stays a bug."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import pytest
from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection as RedisConnection

from gateway.core.errors import StoreUnavailable
from gateway.store_health import StoreHealth, guarded


@guarded
class FlakyStore:
    """Fails with whatever the test puts in `error`; `delay_s` makes each call slow."""

    def __init__(self, budget_s: float = 1.0) -> None:
        self.health = StoreHealth("test", budget_s)
        self.error: Exception | None = None
        self.delay_s = 0.0
        self.calls = 0

    async def read(self) -> str:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return "ok"

    async def read_twice(self) -> str:
        """A store method built on another: one call for the guard."""
        return await self.read() + await self.read()

    async def close(self) -> None:
        raise redis_errors.ConnectionError("close is not guarded")


def unreachable_cluster() -> Exception:
    """What redis-py's Cluster client raises when no node answers."""
    try:
        try:
            raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:7000.")
        except redis_errors.ConnectionError as error:
            raise redis_errors.RedisClusterException(
                "Redis Cluster cannot be connected."
            ) from error
    except redis_errors.RedisClusterException as error:
        return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis_errors.ConnectionError("Connection refused"), "connection"),
        (redis_errors.TimeoutError("Timeout reading from socket"), "timeout"),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), "readonly"),
        (redis_errors.TryAgainError("TRYAGAIN"), "failover"),
        (
            redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
            "out_of_memory",
        ),
        (redis_errors.SlotNotCoveredError("slot 3999 is not covered"), "failover"),
        (unreachable_cluster(), "connection"),
        (sqlite3.OperationalError("database is locked"), "locked"),
        (sqlite3.OperationalError("disk I/O error"), "io"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection"),
    ],
)
async def test_availability_failures_become_503(error: Exception, kind: str) -> None:
    store = FlakyStore()
    store.error = error
    with pytest.raises(StoreUnavailable) as caught:
        await store.read()
    unavailable = caught.value
    assert (unavailable.status, unavailable.code, unavailable.kind) == (
        503,
        "store_unavailable",
        kind,
    )
    assert unavailable.headers["retry-after"] == "1"
    assert "test store" in unavailable.message
    assert str(error) not in unavailable.message  # the backend's words stay in the log


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ResponseError("ERR unknown command 'NOPE'"),
        redis_errors.RedisClusterException("EVAL - all keys must map to the same key slot"),
        sqlite3.OperationalError("no such table: tenants"),
        ValueError("a bug"),
    ],
)
async def test_bugs_are_not_disguised_as_outages(error: Exception) -> None:
    store = FlakyStore()
    store.error = error
    with pytest.raises(type(error)):
        await store.read()
    assert store.health.available


async def test_close_is_not_guarded() -> None:
    with pytest.raises(redis_errors.ConnectionError):
        await FlakyStore().close()


async def test_one_log_line_when_the_store_goes_and_one_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    store.error = redis_errors.ConnectionError("Connection refused")
    with caplog.at_level(logging.WARNING, logger="gateway.store"):
        for _ in range(200):
            with pytest.raises(StoreUnavailable):
                await store.read()
        assert not store.health.available
        store.error = None
        assert await store.read() == "ok"
        assert await store.read() == "ok"
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "test store is unavailable (connection)" in messages[0]
    assert "test store answers again" in messages[1]
    assert store.health.available


async def test_while_down_one_probe_waits_and_the_others_fail_at_once() -> None:
    store = FlakyStore(budget_s=0.5)
    store.error = redis_errors.ConnectionError("Connection refused")
    with pytest.raises(StoreUnavailable):
        await store.read()
    store.error, store.delay_s = None, 0.2
    probe = asyncio.create_task(store.read())
    await asyncio.sleep(0)  # the probe is out
    started = time.monotonic()
    for _ in range(10):
        with pytest.raises(StoreUnavailable):
            await store.read()
    assert time.monotonic() - started < 0.1  # none of them waited for the slow store
    assert await probe == "ok"
    assert store.calls == 2  # the failed call and the probe: the others never reached it
    assert await store.read() == "ok"  # back at once, no cool-down


async def test_a_hung_store_costs_at_most_its_budget() -> None:
    store = FlakyStore(budget_s=0.2)
    store.delay_s = 30.0
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.read()
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 5.0


async def test_a_store_method_calling_another_is_one_probe() -> None:
    store = FlakyStore()
    store.error = redis_errors.ConnectionError("Connection refused")
    with pytest.raises(StoreUnavailable):
        await store.read()
    store.error = None
    assert await store.read_twice() == "okok"  # the inner calls are part of the probe
    assert store.health.available


async def redis_connection_state_error() -> Exception:
    """What redis-py's own connection code raises on a connection a dead node closed under
    it: here, a command packed onto a connection whose writer is gone."""
    try:
        await RedisConnection()._send_packed_command([b"PING"])
    except AttributeError as error:
        return error
    raise AssertionError("redis-py sent on a connection it never opened")


async def test_redis_clients_own_connection_state_errors_are_an_outage() -> None:
    store = FlakyStore()
    store.error = await redis_connection_state_error()
    with pytest.raises(StoreUnavailable) as caught:
        await store.read()
    assert caught.value.kind == "connection"
    store.error = AttributeError("'NoneType' object has no attribute 'writelines'")
    with pytest.raises(AttributeError):  # the same error from our own code is a bug
        await store.read()


class ClosedTransportWriter:
    """A stream writer over a transport the node's death closed: uvloop's transport raises."""

    def writelines(self, data: object) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")


async def test_an_error_from_what_redis_connection_code_calls_is_an_outage() -> None:
    connection = RedisConnection()
    connection._writer = ClosedTransportWriter()  # type: ignore[assignment]
    store = FlakyStore()
    try:
        await connection._send_packed_command([b"PING"])
    except RuntimeError as error:
        store.error = error
    with pytest.raises(StoreUnavailable) as caught:
        await store.read()
    assert caught.value.kind == "connection"
    store.error = RuntimeError("unable to perform operation on <TCPTransport closed=True>")
    with pytest.raises(RuntimeError):  # raised in our own code, it is a bug
        await store.read()
