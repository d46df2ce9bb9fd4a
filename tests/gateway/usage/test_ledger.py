"""The ledger on both stores: what it counts, how it reads back, and that no count is lost or
doubled when the store fails. Every test runs against real Redis and a real SQLite file."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from gateway.core.errors import StoreUnavailable
from gateway.usage.backend import Batch, UsageBackend, UsageFilter
from gateway.usage.counts import UsageCounts, UsageKey
from gateway.usage.ledger import BATCH_ROWS, UsageLedger
from gateway.usage.report import summarize
from tests.gateway.usage.conftest import (
    DAY_1,
    DAY_2,
    DAY_3,
    Clock,
    LedgerStore,
    OwnRedis,
    noon,
    redis_ledger_store,
)

WAIT_S = 10.0


async def stored(backend: UsageBackend, usage_filter: UsageFilter | None = None) -> dict:
    return dict(await backend.read(usage_filter or UsageFilter()))


async def read(ledger: UsageLedger, **filters: str) -> dict:
    return dict(await ledger.read(UsageFilter(**filters)))


async def test_counts_add_up_per_row(store: LedgerStore) -> None:
    async with store.opened(clock=Clock()) as ledger:
        ledger.record("t1", "k1", "m1", 10, 5, 200)
        ledger.record("t1", "k1", "m1", 7, 3, 200)
        ledger.record("t1", "k1", "m1", 4, 2, 499)  # the client left: charged, not an error
        ledger.record("t1", "k1", "m1", 3, 1, 502)  # a stream that broke off
        ledger.record("t1", "k1", "m1", 0, 0, 0)  # ended without a status: a gateway failure
        ledger.record("t1", "k1", None, 0, 0, 404)  # unknown model
        ledger.record("t1", "k2", "m1", 0, 0, 429)
        ledger.record(None, None, "m1", 9, 9, 401)  # no tenant: nobody to charge
        rows = await read(ledger)
    assert rows == {
        UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(5, 24, 11, errors=2, rejected=0),
        UsageKey(DAY_1, "t1", "k1", ""): UsageCounts(1, 0, 0, errors=0, rejected=1),
        UsageKey(DAY_1, "t1", "k2", "m1"): UsageCounts(1, 0, 0, errors=0, rejected=1),
    }


async def test_filters_and_grouping(store: LedgerStore) -> None:
    clock = Clock()
    async with store.opened(clock=clock) as ledger:
        ledger.record("t1", "k1", "m1", 10, 1, 200)
        ledger.record("t1", "k1", "m2", 20, 2, 200)
        ledger.record("t1", "k2", "m1", 30, 3, 200)
        clock.now = noon(DAY_2)
        ledger.record("t1", "k1", "m1", 40, 4, 200)
        ledger.record("t2", "k3", "m1", 50, 5, 500)
        assert set(await read(ledger, tenant_id="t2")) == {UsageKey(DAY_2, "t2", "k3", "m1")}
        assert set(await read(ledger, key_id="k2")) == {UsageKey(DAY_1, "t1", "k2", "m1")}
        assert set(await read(ledger, tenant_id="t1", model="m2")) == {
            UsageKey(DAY_1, "t1", "k1", "m2")
        }
        assert await read(ledger, tenant_id="t3") == {}
        rows = await ledger.read(UsageFilter(model="m1"))
    by_tenant = summarize(rows, ["tenant"])
    assert [(row["tenant_id"], row["prompt_tokens"]) for row in by_tenant["rows"]] == [
        ("t1", 80),
        ("t2", 50),
    ]
    assert by_tenant["totals"] == {
        "requests": 4,
        "prompt_tokens": 130,
        "completion_tokens": 13,
        "total_tokens": 143,
        "errors": 1,
        "rejected": 0,
    }
    by_day_and_key = summarize(rows, ["day", "key"])
    assert [(row["day"], row["key_id"], row["requests"]) for row in by_day_and_key["rows"]] == [
        (DAY_1, "k1", 1),
        (DAY_1, "k2", 1),
        (DAY_2, "k1", 1),
        (DAY_2, "k3", 1),
    ]


async def test_date_ranges_are_inclusive_utc_days(store: LedgerStore) -> None:
    clock = Clock()
    async with store.opened(clock=clock) as ledger:
        for day in (DAY_1, DAY_2, DAY_3):
            clock.now = noon(day)
            ledger.record("t1", "k1", "m1", 1, 1, 200)
        clock.now = noon(DAY_3) + 12 * 3600 - 0.001  # the last millisecond of DAY_3
        ledger.record("t1", "k1", "m1", 100, 0, 200)
        clock.now += 0.002  # just past midnight: the next day
        ledger.record("t1", "k1", "m1", 1000, 0, 200)

        async def days(**bounds: str) -> list[str]:
            return sorted(key.day for key in await read(ledger, **bounds))

        assert await days() == [DAY_1, DAY_2, DAY_3, "2030-01-04"]
        assert await days(first_day=DAY_2, last_day=DAY_2) == [DAY_2]
        assert await days(first_day=DAY_2) == [DAY_2, DAY_3, "2030-01-04"]
        assert await days(last_day=DAY_2) == [DAY_1, DAY_2]
        assert await days(first_day="2031-01-01") == []
        day_3 = await read(ledger, first_day=DAY_3, last_day=DAY_3)
    assert day_3[UsageKey(DAY_3, "t1", "k1", "m1")].prompt_tokens == 101


async def test_counts_are_durable_across_ledger_instances(store: LedgerStore) -> None:
    async with store.opened(clock=Clock()) as first:
        first.record("t1", "k1", "m1", 10, 5, 200)
        first.record("t1", "k1", "m1", 10, 5, 200)
    # `close` flushed; a new ledger (a restarted gateway) reads and adds to the same rows
    async with store.opened(clock=Clock()) as second:
        assert await read(second) == {UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(2, 20, 10)}
        second.record("t1", "k1", "m1", 1, 1, 200)
        assert await read(second) == {UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(3, 21, 11)}


async def test_nothing_is_lost_when_the_store_fails(store: LedgerStore) -> None:
    """The background flush fails during an outage, keeps the counts, and writes them after."""
    key = UsageKey(DAY_1, "t1", "k1", "m1")
    reader = store.open_backend()
    async with store.opened(clock=Clock(), flush_interval_s=0.05) as ledger:
        flusher = asyncio.create_task(ledger.run())
        try:
            ledger.record("t1", "k1", "m1", 1, 1, 200)
            assert await eventually_stored(reader, {key: UsageCounts(1, 1, 1)})
            with store.outage():
                ledger.record("t1", "k1", "m1", 10, 10, 200)
                with pytest.raises(StoreUnavailable):
                    await ledger.flush()
                ledger.record("t1", "k1", "m1", 100, 100, 200)
                ledger.record("t1", "k2", "m1", 0, 0, 429)
            assert not flusher.done()
            expected = {
                key: UsageCounts(3, 111, 111),
                key._replace(key_id="k2"): UsageCounts(1, 0, 0, rejected=1),
            }
            assert await eventually_stored(reader, expected)
        finally:
            flusher.cancel()
    await reader.close()


async def eventually_stored(backend: UsageBackend, expected: dict) -> bool:
    """Whether the store holds `expected` within WAIT_S (a background flush runs meanwhile)."""
    deadline = time.monotonic() + WAIT_S
    while await stored(backend) != expected:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_retried_batch_is_applied_once(store: LedgerStore) -> None:
    """A write whose answer was lost is sent again: the store must not count it twice."""
    key = UsageKey(DAY_1, "t1", "k1", "m1")
    first = Batch("writer-a", 1, {key: UsageCounts(1, 10, 5)})
    second = Batch("writer-a", 2, {key: UsageCounts(1, 1, 1)})
    other_writer = Batch("writer-b", 1, {key: UsageCounts(1, 100, 100)})
    backend = store.open_backend()
    try:
        await backend.write([first])
        await backend.write([first])
        await backend.write([first, second])
        await backend.write([other_writer])
        assert await stored(backend) == {key: UsageCounts(3, 111, 106)}
    finally:
        await backend.close()


class CountingBackend:
    """The store, with its writes counted."""

    def __init__(self, inner: UsageBackend) -> None:
        self.inner = inner
        self.writes: list[list[Batch]] = []

    async def write(self, batches: list[Batch]) -> None:
        self.writes.append(batches)
        await self.inner.write(batches)

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        return await self.inner.read(usage_filter)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_flush_is_one_write(store: LedgerStore) -> None:
    backend = CountingBackend(store.open_backend())
    ledger = UsageLedger(backend, clock=Clock())
    try:
        rows = 2 * BATCH_ROWS + 7
        for request in range(3 * rows):
            row = request % rows
            ledger.record(f"t{row % 3}", f"k{row}", "m1", 1, 1, 200)
        await ledger.flush()
        await ledger.flush()  # nothing new: no write
        assert len(backend.writes) == 1
        assert [len(batch.counts) for batch in backend.writes[0]] == [BATCH_ROWS, BATCH_ROWS, 7]
        assert [batch.sequence for batch in backend.writes[0]] == [1, 2, 3]
        counts = await stored(backend)
        assert len(counts) == rows
        assert {c.requests for c in counts.values()} == {3}
    finally:
        await ledger.close()


async def test_pending_rows_are_bounded(store: LedgerStore) -> None:
    async with store.opened(clock=Clock(), max_pending_entries=2) as ledger:
        ledger.record("t1", "k1", "m1", 1, 1, 200)
        ledger.record("t1", "k2", "m1", 1, 1, 200)
        ledger.record("t1", "k3", "m1", 1, 1, 200)  # a third row: dropped
        ledger.record("t1", "k1", "m1", 1, 1, 200)  # an existing row still counts
        assert await read(ledger) == {
            UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(2, 2, 2),
            UsageKey(DAY_1, "t1", "k2", "m1"): UsageCounts(1, 1, 1),
        }
        ledger.record("t1", "k3", "m1", 1, 1, 200)  # flushed: room again
        assert UsageKey(DAY_1, "t1", "k3", "m1") in await read(ledger)


async def test_a_lost_redis_reply_is_not_counted_twice(own_redis: OwnRedis) -> None:
    """Redis frozen: the flush times out with its script queued in Redis, which runs it once
    it wakes up; the retry must then be skipped, not counted again."""
    key = UsageKey(DAY_1, "t1", "k1", "m1")
    store = redis_ledger_store(own_redis)
    async with store.opened(clock=Clock()) as ledger:
        ledger.record("t1", "k1", "m1", 100, 50, 200)
        await ledger.flush()  # connected: the next flush's script is sent before it waits
        ledger.record("t1", "k1", "m1", 10, 5, 200)
        with own_redis.frozen(), pytest.raises(StoreUnavailable):
            await ledger.flush()
        ledger.record("t1", "k1", "m1", 1, 1, 200)
        assert await read(ledger) == {key: UsageCounts(3, 111, 56)}


async def test_a_redis_flush_is_one_command(own_redis: OwnRedis) -> None:
    """What reaches Redis from the ledger for a flush of many rows: one EVAL, nothing else."""
    store = redis_ledger_store(own_redis)
    async with (
        store.opened(clock=Clock()) as ledger,
        aioredis.from_url(own_redis.url, decode_responses=True) as watcher,
        aioredis.from_url(own_redis.url) as marker,
    ):
        # Both connect (and introduce themselves to Redis) before Redis is watched.
        ledger.record("t0", "k0", "m0", 1, 1, 200)
        await ledger.flush()
        await marker.ping()
        async with watcher.monitor() as monitor:
            for request in range(300):
                ledger.record(f"t{request % 4}", f"k{request % 30}", f"m{request % 5}", 1, 1, 200)
            await ledger.flush()
            await marker.echo("flush-done")
            commands = []
            while "flush-done" not in (command := await monitor.next_command())["command"]:
                commands.append(command)
    from_clients = [c["command"].split()[0] for c in commands if c["client_type"] != "lua"]
    assert from_clients == ["EVAL"]
    increments = [c for c in commands if c["command"].startswith("HINCRBY")]
    assert len(increments) == 60 * 3  # 60 rows; requests, prompt and completion tokens
