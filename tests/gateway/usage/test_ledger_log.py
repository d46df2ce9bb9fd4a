"""The ledger's log: a process killed with SIGKILL loses no request, its log is stored once by
the next process to start, and a live process's log is left alone.

The killed process is a real one (tests/gateway/usage/killed_ledger.py, which kills itself
once its requests are in every state); the chaos suite does the same to a whole gateway under
load (tests/chaos/test_ledger_kill9.py).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from gateway.settings import StoreSettings, UsageSettings
from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.counts import UsageCounts, UsageKey
from gateway.usage.ledger import UsageLedger
from gateway.usage.records import UsageRecord
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.processes import PYTHON, REPO_ROOT
from tests.gateway.usage.conftest import answer_starts, finish, inference, new_ledger


def killed_ledger(database: Path, wal_dir: Path) -> None:
    child = subprocess.run(
        [PYTHON, "-m", "tests.gateway.usage.killed_ledger", str(database), str(wal_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


async def stored_records(database: Path) -> dict[str, UsageRecord]:
    backend = SqliteUsageBackend(database)
    try:
        records = await backend.read_records(RecordFilter("t1"))
    finally:
        await backend.close()
    by_request = {record.request_id: record for record in records}
    assert len(by_request) == len(records), "a request stored twice"
    return by_request


async def restart(database: Path, wal_dir: Path) -> None:
    """A process starts on the same log and store, flushes once and stops."""
    ledger = new_ledger(SqliteUsageBackend(database), wal_dir)
    await ledger.start()
    await ledger.flush()
    await ledger.close()


async def test_a_killed_process_loses_nothing(tmp_path: Path) -> None:
    database, wal_dir = tmp_path / "gateway.db", tmp_path / "wal"
    killed_ledger(database, wal_dir)
    before = await stored_records(database)
    assert set(before) == {"done-before-flush"}  # the only one stored before the kill

    await restart(database, wal_dir)
    records = await stored_records(database)
    assert set(records) == {
        "done-before-flush",
        "done-and-logged",
        "done-just-now",
        "stream-started",
        "stream-with-usage",
        "whole-sent",
    }
    for request_id in ("done-before-flush", "done-and-logged", "done-just-now"):
        done = records[request_id]
        assert (done.prompt_tokens, done.completion_tokens, done.status) == (10, 5, 200)
    for request_id in ("done-before-flush", "done-and-logged"):
        assert not records[request_id].aborted and records[request_id].latency_ms is not None
    # its final entry was still buffered: stored from the provisional one, written before
    # its answer was sent
    assert records["done-just-now"].aborted and records["done-just-now"].latency_ms is None
    cut = records["stream-started"]
    assert cut.aborted and cut.estimated and cut.status == 0  # an error in the daily rows
    assert (cut.prompt_tokens, cut.completion_tokens, cut.latency_ms) == (0, 0, None)
    with_usage = records["stream-with-usage"]
    assert with_usage.aborted and not with_usage.estimated and with_usage.status == 200
    assert (with_usage.prompt_tokens, with_usage.completion_tokens) == (7, 3)
    whole = records["whole-sent"]
    assert whole.aborted and (whole.prompt_tokens, whole.completion_tokens) == (4, 2)

    backend = SqliteUsageBackend(database)
    try:
        rows = await backend.read(UsageFilter())
    finally:
        await backend.close()
    [(key, counts)] = rows
    assert key == UsageKey(records["whole-sent"].day, "t1", "k1", "m1")
    assert counts == UsageCounts(6, 3 * 10 + 7 + 4, 3 * 5 + 3 + 2, errors=1)
    assert list(wal_dir.iterdir()) == []  # stored, then deleted


async def test_a_log_stored_twice_counts_once(tmp_path: Path) -> None:
    """A process killed after the store took the log, before it deleted it: the next start
    stores the same records again, and nothing changes."""
    database, wal_dir = tmp_path / "gateway.db", tmp_path / "wal"
    killed_ledger(database, wal_dir)
    copy = tmp_path / "wal-copy"
    shutil.copytree(wal_dir, copy)
    await restart(database, wal_dir)
    once = await stored_records(database)
    await restart(database, copy)
    assert await stored_records(database) == once


async def test_the_log_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    database, wal_dir = tmp_path / "gateway.db", tmp_path / "wal"
    live = new_ledger(SqliteUsageBackend(database), wal_dir)
    await live.start()
    try:
        in_flight = inference("t1", "k1", "m1", stream=True, request_id="in-flight")
        delivery = await answer_starts(live, in_flight)
        await restart(database, wal_dir)  # another worker starts beside it
        assert await stored_records(database) == {}
        in_flight.usage = {"prompt_tokens": 3, "completion_tokens": 2}
        live.finished(delivery, 0.2)
        finish(live, inference("t1", "k1", "m1", 1, 1, request_id="after"))
    finally:
        await live.close()
    records = await stored_records(database)
    assert set(records) == {"in-flight", "after"}
    assert not records["in-flight"].aborted


async def test_each_store_has_a_log_directory_of_its_own(tmp_path: Path) -> None:
    """Gateways of different stores sharing `usage.wal_dir` never claim each other's logs:
    each store's log is in a directory of its own there."""
    usage = UsageSettings(wal_dir=tmp_path / "logs")

    async def started(store: StoreSettings) -> None:
        ledger = UsageLedger.from_settings(SqliteUsageBackend(tmp_path / "x.db"), usage, store)
        await ledger.start()
        await ledger.close()

    await started(StoreSettings(sqlite_path=tmp_path / "a.db"))
    await started(StoreSettings(sqlite_path=tmp_path / "b.db"))
    await started(StoreSettings(sqlite_path=tmp_path / "a.db"))
    redis = {"redis_url": "redis://127.0.0.1:1", "sqlite_path": tmp_path / "a.db"}
    await started(StoreSettings(**redis, redis_prefix="one:"))
    await started(StoreSettings(**redis, redis_prefix="two:"))
    await started(StoreSettings(**redis, postgres_url="postgresql://127.0.0.1:1/one"))
    await started(StoreSettings(**redis, postgres_url="postgresql://127.0.0.1:1/two"))
    kinds = sorted(path.name.split("-")[0] for path in (tmp_path / "logs").iterdir())
    assert kinds == ["postgres", "postgres", "redis", "redis", "sqlite", "sqlite"]
