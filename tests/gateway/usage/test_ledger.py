"""The ledger on every store: what it counts, how it reads back, and that no count is lost or
doubled when the store fails. Every test runs against real Redis, a real Postgres database and
a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.core.errors import StoreUnavailable
from gateway.usage.backend import RecordFilter, UsageBackend, UsageFilter
from gateway.usage.counts import UsageCounts, UsageKey
from gateway.usage.ledger import WRITE_RECORDS, UsageLedger
from gateway.usage.records import UsageRecord
from gateway.usage.redis_backend import RECORD_RETENTION_S, RedisUsageBackend
from gateway.usage.report import summarize
from gateway.usage.wal import WriteAheadLog
from tests.gateway.usage.conftest import (
    CHAT,
    DAY_1,
    DAY_2,
    DAY_3,
    Clock,
    LedgerStore,
    OwnRedis,
    answer_starts,
    events_sent,
    inference,
    noon,
    record,
    redis_ledger_store,
)

WAIT_S = 10.0


async def stored(backend: UsageBackend, usage_filter: UsageFilter | None = None) -> dict:
    return dict(await backend.read(usage_filter or UsageFilter()))


async def read(ledger: UsageLedger, **filters: str) -> dict:
    return dict(await ledger.read(UsageFilter(**filters)))


def a_record(record_id: str, prompt_tokens: int, completion_tokens: int) -> UsageRecord:
    return UsageRecord(
        record_id=record_id,
        request_id=f"request-{record_id}",
        time=noon(DAY_1),
        tenant_id="t1",
        key_id="k1",
        endpoint=CHAT,
        model="m1",
        upstream_model="base",
        replica="http://replica",
        stream=False,
        status=200,
        prompt_tokens=prompt_tokens,
        cached_tokens=0,
        completion_tokens=completion_tokens,
        latency_ms=12.5,
        ttft_ms=None,
        estimated=False,
        aborted=False,
    )


async def test_counts_add_up_per_row(store: LedgerStore) -> None:
    async with store.opened(clock=Clock()) as ledger:
        record(ledger, "t1", "k1", "m1", 10, 5, 200)
        record(ledger, "t1", "k1", "m1", 7, 3, 200)
        record(ledger, "t1", "k1", "m1", 4, 2, 499)  # the client left: charged, not an error
        record(ledger, "t1", "k1", "m1", 3, 1, 502)  # a stream that broke off
        record(ledger, "t1", "k1", "m1", 0, 0, 0)  # ended without a status: a gateway failure
        record(ledger, "t1", "k1", None, 0, 0, 404)  # unknown model
        record(ledger, "t1", "k2", "m1", 0, 0, 429)
        record(ledger, None, None, "m1", 9, 9, 401)  # no tenant: nobody to charge
        rows = await read(ledger)
    assert rows == {
        UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(5, 24, 11, errors=2, rejected=0),
        UsageKey(DAY_1, "t1", "k1", ""): UsageCounts(1, 0, 0, errors=0, rejected=1),
        UsageKey(DAY_1, "t1", "k2", "m1"): UsageCounts(1, 0, 0, errors=0, rejected=1),
    }


async def test_filters_and_grouping(store: LedgerStore) -> None:
    clock = Clock()
    async with store.opened(clock=clock) as ledger:
        record(ledger, "t1", "k1", "m1", 10, 1, 200)
        record(ledger, "t1", "k1", "m2", 20, 2, 200)
        record(ledger, "t1", "k2", "m1", 30, 3, 200)
        clock.now = noon(DAY_2)
        record(ledger, "t1", "k1", "m1", 40, 4, 200)
        record(ledger, "t2", "k3", "m1", 50, 5, 500)
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
            record(ledger, "t1", "k1", "m1", 1, 1, 200)
        clock.now = noon(DAY_3) + 12 * 3600 - 0.001  # the last millisecond of DAY_3
        record(ledger, "t1", "k1", "m1", 100, 0, 200)
        clock.now += 0.002  # just past midnight: the next day
        record(ledger, "t1", "k1", "m1", 1000, 0, 200)

        async def days(**bounds: str) -> list[str]:
            return sorted(key.day for key in await read(ledger, **bounds))

        assert await days() == [DAY_1, DAY_2, DAY_3, "2030-01-04"]
        assert await days(first_day=DAY_2, last_day=DAY_2) == [DAY_2]
        assert await days(first_day=DAY_2) == [DAY_2, DAY_3, "2030-01-04"]
        assert await days(last_day=DAY_2) == [DAY_1, DAY_2]
        assert await days(first_day="2031-01-01") == []
        day_3 = await read(ledger, first_day=DAY_3, last_day=DAY_3)
    assert day_3[UsageKey(DAY_3, "t1", "k1", "m1")].prompt_tokens == 101


async def test_a_record_per_request(store: LedgerStore) -> None:
    """What one request's record holds, streamed and whole, read back from the store."""
    clock = Clock()
    async with store.opened(clock=clock) as ledger:
        whole = inference(
            "t1",
            "k1",
            "m1",
            status=200,
            upstream_model="tenant-a",
            replica="http://replica-1",
            request_id="client-request-1",
        )
        whole.usage = {
            "prompt_tokens": 30,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 16},
        }
        delivery = await answer_starts(ledger, whole)
        ledger.finished(delivery, 0.25)
        stream = inference("t1", "k2", "m1", status=200, stream=True, replica="http://replica-2")
        delivery = await answer_starts(ledger, stream)
        stream.first_event_at = stream.started + 0.04
        await events_sent(delivery)
        stream.usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        await events_sent(delivery)
        ledger.finished(delivery, 0.5)
        cut = inference("t1", "k2", "m1", status=499, stream=True)
        delivery = await answer_starts(ledger, cut)
        cut.usage = {"prompt_tokens": 5, "completion_tokens": 2}  # the pipeline's estimate
        ledger.finished(delivery, 0.1)
        await ledger.flush()
    backend = store.open_backend()
    try:
        records = await backend.read_records(RecordFilter("t1", DAY_1, DAY_1))
        assert await backend.read_records(RecordFilter("t1", DAY_2)) == []
        assert await backend.read_records(RecordFilter("t2")) == []
    finally:
        await backend.close()
    by_key = {(r.key_id, r.status): r for r in records}
    assert len(records) == 3 == len(by_key) == len({r.record_id for r in records})
    whole_record = by_key["k1", 200]
    assert whole_record.request_id == "client-request-1"
    assert (whole_record.endpoint, whole_record.model) == (CHAT, "m1")
    assert (whole_record.upstream_model, whole_record.replica) == ("tenant-a", "http://replica-1")
    assert (whole_record.prompt_tokens, whole_record.cached_tokens) == (30, 16)
    assert whole_record.completion_tokens == 7
    assert whole_record.latency_ms == pytest.approx(250.0)
    assert whole_record.ttft_ms is None
    assert whole_record.time == noon(DAY_1)
    assert not (whole_record.stream or whole_record.estimated or whole_record.aborted)
    stream_record = by_key["k2", 200]
    assert stream_record.stream and not stream_record.estimated
    assert (stream_record.prompt_tokens, stream_record.completion_tokens) == (5, 3)
    assert stream_record.ttft_ms == pytest.approx(40.0)
    assert stream_record.latency_ms == pytest.approx(500.0)
    assert by_key["k2", 499].estimated and not by_key["k2", 499].aborted


async def test_counts_are_durable_across_ledger_instances(store: LedgerStore) -> None:
    async with store.opened(clock=Clock()) as first:
        record(first, "t1", "k1", "m1", 10, 5, 200)
        record(first, "t1", "k1", "m1", 10, 5, 200)
    # `close` flushed; a new ledger (a restarted gateway) reads and adds to the same rows
    async with store.opened(clock=Clock()) as second:
        assert await read(second) == {UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(2, 20, 10)}
        record(second, "t1", "k1", "m1", 1, 1, 200)
        assert await read(second) == {UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(3, 21, 11)}
    assert list(store.wal_dir.iterdir()) == []  # all stored: a clean close leaves no log


async def test_nothing_is_lost_when_the_store_fails(store: LedgerStore) -> None:
    """The background flush fails during an outage, keeps the log, and stores it after."""
    key = UsageKey(DAY_1, "t1", "k1", "m1")
    reader = store.open_backend()
    async with store.opened(clock=Clock(), flush_interval_s=0.05) as ledger:
        flusher = asyncio.create_task(ledger.run_background())
        try:
            record(ledger, "t1", "k1", "m1", 1, 1, 200)
            assert await eventually_stored(reader, {key: UsageCounts(1, 1, 1)})
            with store.outage():
                record(ledger, "t1", "k1", "m1", 10, 10, 200)
                with pytest.raises(StoreUnavailable):
                    await ledger.flush()
                record(ledger, "t1", "k1", "m1", 100, 100, 200)
                record(ledger, "t1", "k2", "m1", 0, 0, 429)
                await asyncio.sleep(0.2)  # more failed flushes: more segments wait
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


async def test_a_record_written_again_counts_once(store: LedgerStore) -> None:
    """A write whose answer was lost is sent again, a log is replayed after a crash: the store
    must keep each record, and count it, once."""
    key = UsageKey(DAY_1, "t1", "k1", "m1")
    first, second, third = a_record("a", 10, 5), a_record("b", 1, 1), a_record("c", 100, 100)
    backend = store.open_backend()
    try:
        await backend.write([first])
        await backend.write([first])
        await backend.write([first, second])
        await backend.write([third, second, third])
        assert await stored(backend) == {key: UsageCounts(3, 111, 106)}
        records = await backend.read_records(RecordFilter("t1"))
        assert sorted(records, key=lambda r: r.record_id) == [first, second, third]
    finally:
        await backend.close()


class CountingBackend:
    """The store, with its writes counted."""

    def __init__(self, inner: UsageBackend) -> None:
        self.inner = inner
        self.health = inner.health
        self.writes: list[list[UsageRecord]] = []

    async def write(self, records: list[UsageRecord]) -> None:
        self.writes.append(records)
        await self.inner.write(records)

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        return await self.inner.read(usage_filter)

    async def read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        return await self.inner.read_records(record_filter)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_flush_is_one_write(store: LedgerStore) -> None:
    backend = CountingBackend(store.open_backend())
    ledger = UsageLedger(backend, WriteAheadLog(store.wal_dir, 0.005), clock=Clock())
    await ledger.start()
    try:
        rows = 301
        for request in range(3 * rows):
            row = request % rows
            record(ledger, f"t{row % 3}", f"k{row}", "m1", 1, 1, 200)
        await ledger.flush()
        await ledger.flush()  # nothing new: no write
        assert [len(records) for records in backend.writes] == [3 * rows]
        counts = await stored(backend)
        assert len(counts) == rows
        assert {c.requests for c in counts.values()} == {3}
        for _ in range(WRITE_RECORDS + 1):
            record(ledger, "t1", "k1", "m1", 1, 1, 200)
        await ledger.flush()
        assert [len(records) for records in backend.writes[1:]] == [WRITE_RECORDS, 1]
    finally:
        await ledger.close()


class FullDisk(WriteAheadLog):
    """A log whose every write fails as on a full disk: the buffer and the entry come back."""

    def write(self, entry: bytes = b"") -> bytes:
        unwritten = bytes(self._buffer) + entry
        self._buffer.clear()
        return unwritten


async def test_records_wait_in_memory_while_the_log_cannot_be_written(
    store: LedgerStore,
) -> None:
    ledger = UsageLedger(
        store.open_backend(),
        FullDisk(store.wal_dir, 0.005),
        max_pending_entries=2,
        clock=Clock(),
    )
    await ledger.start()
    try:
        delivery = await answer_starts(ledger, inference("t1", "k1", "m1", 1, 1, 200))
        ledger.finished(delivery, 0.01)
        record(ledger, "t1", "k2", "m1", 1, 1, 200)
        record(ledger, "t1", "k3", "m1", 1, 1, 200)  # a third: not recorded
        assert await read(ledger) == {
            UsageKey(DAY_1, "t1", "k1", "m1"): UsageCounts(1, 1, 1),
            UsageKey(DAY_1, "t1", "k2", "m1"): UsageCounts(1, 1, 1),
        }
        record(ledger, "t1", "k3", "m1", 1, 1, 200)  # stored: room again
        assert UsageKey(DAY_1, "t1", "k3", "m1") in await read(ledger)
    finally:
        await ledger.close()


async def test_a_lost_redis_reply_is_not_counted_twice(own_redis: OwnRedis, tmp_path: Path) -> None:
    """Redis frozen: the flush times out with its script queued in Redis, which runs it once
    it wakes up; the retry must then be skipped, not counted again."""
    key = UsageKey(DAY_1, "t1", "k1", "m1")
    store = redis_ledger_store(own_redis, tmp_path / "wal")
    async with store.opened(clock=Clock()) as ledger:
        record(ledger, "t1", "k1", "m1", 100, 50, 200)
        await ledger.flush()  # connected: the next flush's script is sent before it waits
        record(ledger, "t1", "k1", "m1", 10, 5, 200)
        with own_redis.frozen(), pytest.raises(StoreUnavailable):
            await ledger.flush()
        record(ledger, "t1", "k1", "m1", 1, 1, 200)
        assert await read(ledger) == {key: UsageCounts(3, 111, 56)}


async def test_a_redis_flush_is_one_command(own_redis: OwnRedis, tmp_path: Path) -> None:
    """What reaches Redis from the ledger for a flush of many records: one EVAL, nothing
    else, and one HINCRBY per row and counter, however many records a row has."""
    store = redis_ledger_store(own_redis, tmp_path / "wal")
    async with (
        store.opened(clock=Clock()) as ledger,
        aioredis.from_url(own_redis.url, decode_responses=True) as watcher,
        aioredis.from_url(own_redis.url) as marker,
    ):
        # Both connect (and introduce themselves to Redis) before Redis is watched.
        record(ledger, "t0", "k0", "m0", 1, 1, 200)
        await ledger.flush()
        await marker.ping()
        async with watcher.monitor() as monitor:
            for request in range(60):  # MONITOR shows the script's argument: keep it short
                tenant, key, model = f"t{request % 2}", f"k{request % 6}", f"m{request % 5}"
                record(ledger, tenant, key, model, 1, 1, 200)
            await ledger.flush()
            await marker.echo("flush-done")
            commands = []
            while "flush-done" not in (command := await monitor.next_command())["command"]:
                commands.append(command)
    from_clients = [c["command"].split()[0] for c in commands if c["client_type"] != "lua"]
    assert from_clients == ["EVAL"]
    increments = [c for c in commands if c["command"].startswith("HINCRBY")]
    assert len(increments) == 30 * 3  # 30 rows; requests, prompt and completion tokens
    assert len([c for c in commands if c["command"].startswith("HSETNX")]) == 60


async def test_redis_records_expire_and_the_daily_rows_stay(own_redis: OwnRedis) -> None:
    """Per-request records would grow Redis without bound: each day's records hash expires
    RECORD_RETENTION_S after its last write; the daily counts the usage API reads do not."""
    backend = RedisUsageBackend(own_redis.url, "retention-test:")
    client = aioredis.from_url(own_redis.url)
    try:
        await backend.write([a_record("r1", 3, 4)])
        records_key = f"retention-test:usage-records:{DAY_1}:t1"
        ttl = await client.ttl(records_key)
        assert 0 < ttl <= RECORD_RETENTION_S
        rows = [key async for key in client.scan_iter("retention-test:usage:*")]
        assert rows and all([await client.ttl(key) == -1 for key in rows])
    finally:
        await client.delete(*[key async for key in client.scan_iter("retention-test:*")])
        await client.aclose()
        await backend.close()
