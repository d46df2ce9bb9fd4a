"""The gateway killed with SIGKILL under load, at a seeded random moment (within 2 s, once the
clients have had their first answers), then started again on
the same store and log: the usage ledger must hold every request whose answer reached its
client, once, with the tokens the client was shown (issue 18).

Eight client threads call the gateway in front of the stand-in: four whole answers, four
streams (half of their requests with `include_usage`), 16 tokens each, every request with an
`x-request-id` of its own. A whole answer is delivered when its body was read whole, a stream
when its `data: [DONE]` arrived (whatever came after). After the restart, the records are read
from the store by request id: 0 delivered requests missing, 0 stored twice, the tokens of
every delivered answer exact. Requests in flight at the kill are recorded as aborted (a whole
answer still on its way: status 0, no tokens; a stream cut before vLLM's usage: its tokens
estimated), unless the kill came before their upstream call or within the log's buffer time
of it (they are counted, not asserted); the daily rows must add up to the records. On SQLite,
Redis and Postgres.

    .venv/bin/python -m pytest tests/chaos/test_ledger_kill9.py       # CI: one seeded run each
    LEDGER_KILL9_RUNS=20 LEDGER_KILL9_SEED=random .venv/bin/python -m pytest -s \\
        tests/chaos/test_ledger_kill9.py                              # a long random run

The seed of each run is in its test id and in the chaos report, so a failure can be run again
with LEDGER_KILL9_SEED set to it (and LEDGER_KILL9_RUNS=1).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.postgres.database import PostgresDatabase
from gateway.usage.backend import RecordFilter, UsageBackend
from gateway.usage.postgres_backend import PostgresUsageBackend
from gateway.usage.records import UsageRecord
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.chaos.expectations import Expectations
from tests.chaos.report import ChaosReport
from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis import delete_prefixed_keys
from tests.fixtures.standin import set_faults

RUNS = int(os.environ.get("LEDGER_KILL9_RUNS", "1"))
_SEED = os.environ.get("LEDGER_KILL9_SEED", "18")
BASE_SEED = random.SystemRandom().randrange(10**6) if _SEED == "random" else int(_SEED)
SEEDS = [BASE_SEED + run for run in range(RUNS)]

CLIENTS = 8  # 0-3 whole answers, 4-7 streams
MAX_TOKENS = 16
ITL_MS = 5  # ~80 ms a request: always some in flight, about 100 answers a second
WARM = CLIENTS  # answers delivered before the kill's moment is counted from
KILL_AFTER_S = (0.0, 2.0)  # then the kill falls at a uniform moment of this span
REQUEST_TIMEOUT_S = 30.0
FLUSH_INTERVAL_S = "0.2"


@dataclass(frozen=True, slots=True)
class Sent:
    """One request as its client saw it."""

    request_id: str
    stream: bool
    delivered: bool  # the whole body, or the stream's [DONE]
    usage: tuple[int, int] | None  # prompt and completion tokens shown to the client
    failure: str | None  # the transport error that ended it, if one did


def send(client: httpx.Client, secret: str, request_id: str, stream: bool, usage: bool) -> Sent:
    body: dict[str, Any] = {
        "model": "base",
        "messages": [{"role": "user", "content": f"count for {request_id}"}],
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {secret}", "x-request-id": request_id}
    delivered, seen, failure = False, None, None
    try:
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as answer:
            if not stream:
                document = orjson.loads(answer.read())
                delivered = answer.status_code == 200
                seen = _usage(document.get("usage"))
            else:
                for line in answer.iter_lines():
                    if line == "data: [DONE]":
                        delivered = answer.status_code == 200
                    elif line.startswith("data: {") and '"usage"' in line:
                        seen = _usage(orjson.loads(line[6:]).get("usage")) or seen
    except (httpx.HTTPError, orjson.JSONDecodeError) as error:
        failure = type(error).__name__
    return Sent(request_id, stream, delivered, seen, failure)


def _usage(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    return usage["prompt_tokens"], usage["completion_tokens"]


def load(
    gateway: Gateway, run: str, stop: threading.Event, sent: list[Sent]
) -> list[threading.Thread]:
    """CLIENTS threads calling `gateway` back to back until `stop` (then they finish the
    request they are in); started."""

    def client(index: int) -> None:
        stream = index >= CLIENTS // 2
        with httpx.Client(base_url=gateway.url, timeout=REQUEST_TIMEOUT_S) as http:
            for number in range(10**6):
                if stop.is_set():
                    return
                request_id = f"{run}-c{index}-{number}"
                outcome = send(http, gateway.api_key, request_id, stream, number % 2 == 0)
                sent.append(outcome)
                if outcome.failure == "ConnectError":  # the gateway is gone
                    return

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


@dataclass
class LedgerStore:
    """Where the gateway keeps its tenants, keys and ledger (its log is beside, in `wal_dir`),
    and a backend to read the records back."""

    name: str
    settings: dict[str, str]
    open_backend: Callable[[], UsageBackend]


@asynccontextmanager
async def ledger_store(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[LedgerStore]:
    wal = {
        "usage__wal_dir": str(tmp_path / "usage-wal"),
        "usage__flush_interval_s": FLUSH_INTERVAL_S,
    }
    if name == "postgres":
        url = request.getfixturevalue("postgres_url")
        settings = {
            "store__postgres_url": url,
            "auth__key_hash_secret": "chaos-ledger-key-hash-secret",
            **wal,
        }
        yield LedgerStore(name, settings, lambda: PostgresUsageBackend(PostgresDatabase(url), 5.0))
        return
    redis_url = request.getfixturevalue("redis_url")
    if name == "sqlite":
        path = tmp_path / "gateway.db"
        yield LedgerStore(
            name, {"store__sqlite_path": str(path), **wal}, lambda: SqliteUsageBackend(path)
        )
        return
    prefix = f"chaos-ledger-{uuid.uuid4().hex[:8]}:"
    settings = {
        "store__redis_url": redis_url,
        "store__redis_prefix": prefix,
        "auth__key_hash_secret": "chaos-ledger-key-hash-secret",
        **wal,
    }
    try:
        yield LedgerStore(name, settings, lambda: RedisUsageBackend(redis_url, prefix))
    finally:
        await delete_prefixed_keys(redis_url, prefix)


async def stored_records(store: LedgerStore, tenant_id: str) -> list[UsageRecord]:
    backend = store.open_backend()
    try:
        return await backend.read_records(RecordFilter(tenant_id))
    finally:
        await backend.close()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{seed}" for seed in SEEDS])
@pytest.mark.parametrize("store_name", ["sqlite", "redis", "postgres"])
async def test_kill_9_loses_no_delivered_request(
    standin: ServerProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    chaos_report: ChaosReport,
    store_name: str,
    seed: int,
) -> None:
    rng = random.Random(seed)
    set_faults(standin, itl_ms=ITL_MS)
    async with ledger_store(store_name, tmp_path, request) as store:
        gateway = start_gateway(standin.url, tmp_path, **store.settings)
        sent: list[Sent] = []
        stop = threading.Event()
        kill_after_s = rng.uniform(*KILL_AFTER_S)
        try:
            threads = load(gateway, f"{seed}-{uuid.uuid4().hex[:6]}", stop, sent)
            deadline = time.monotonic() + REQUEST_TIMEOUT_S
            while sum(o.delivered for o in sent) < WARM and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(kill_after_s)
            gateway.server.process.send_signal(signal.SIGKILL)
            gateway.server.process.wait(10)
            stop.set()
            for thread in threads:
                await asyncio.to_thread(thread.join, REQUEST_TIMEOUT_S + 5)
        finally:
            gateway.stop()
        started = time.monotonic()
        restarted = start_gateway(
            standin.url, tmp_path, tenant=f"again-{uuid.uuid4().hex[:8]}", **store.settings
        )
        try:
            usage = restarted.admin(  # flushes: the dead gateway's log is stored by then
                "GET", "/usage", params={"tenant_id": gateway.tenant_id, "group_by": ""}
            )
            stored_after_s = time.monotonic() - started
            records = await stored_records(store, gateway.tenant_id)
        finally:
            restarted.stop()

    assert usage.status_code == 200, usage.text
    totals = usage.json()["totals"]
    by_request = Counter(record.request_id for record in records)
    record_of = {record.request_id: record for record in records}
    delivered = [outcome for outcome in sent if outcome.delivered]
    missing = [o.request_id for o in delivered if o.request_id not in record_of]
    doubled = [request_id for request_id, count in by_request.items() if count > 1]
    wrong_tokens = [
        (o.request_id, o.usage, record_of[o.request_id])
        for o in delivered
        if o.usage
        and o.request_id in record_of
        and (record_of[o.request_id].prompt_tokens, record_of[o.request_id].completion_tokens)
        != o.usage
    ]
    in_flight = [o for o in sent if not o.delivered and o.failure != "ConnectError"]
    in_flight_recorded = [record_of[o.request_id] for o in in_flight if o.request_id in record_of]
    sent_ids = {o.request_id for o in sent}
    strangers = [record.request_id for record in records if record.request_id not in sent_ids]
    chaos_report.record(
        f"ledger kill -9 ({store_name}, seed {seed})",
        kill_after_s=round(kill_after_s, 3),
        sent=len(sent),
        delivered=len(delivered),
        delivered_streams=sum(o.stream for o in delivered),
        in_flight_at_kill=len(in_flight),
        refused_after_kill=sum(o.failure == "ConnectError" for o in sent),
        in_flight_recorded=Counter(
            "estimated" if r.estimated else f"aborted {r.status}" if r.aborted else "ended"
            for r in in_flight_recorded
        ),
        delivered_recovered_from_provisional=sum(
            record_of[o.request_id].aborted for o in delivered if o.request_id in record_of
        ),
        missing=len(missing),
        doubled=len(doubled),
        wrong_tokens=len(wrong_tokens),
        restart_until_stored_s=round(stored_after_s, 2),
    )
    expect = Expectations()
    expect.that(len(delivered) >= WARM, "the clients got answers before the kill", len(delivered))
    expect.that(not missing, "every delivered request is in the ledger", missing[:5])
    expect.that(not doubled, "no request is recorded twice", doubled[:5])
    expect.that(not wrong_tokens, "the tokens the clients were shown", wrong_tokens[:3])
    expect.that(not strangers, "no record of a request nobody sent", strangers[:5])
    expect.that(
        all(not record_of[o.request_id].estimated for o in delivered if o.request_id in record_of),
        "a delivered answer's tokens are vLLM's, not an estimate",
    )
    expect.that(
        totals["requests"] == len(records)
        and totals["prompt_tokens"] == sum(r.prompt_tokens for r in records)
        and totals["completion_tokens"] == sum(r.completion_tokens for r in records),
        "the daily rows add up to the records",
        (totals, len(records)),
    )
    expect.verify()
