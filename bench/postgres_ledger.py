"""Records per second written to the Postgres ledger (target: at least 5,000 on this machine).

    .venv/bin/python -m bench.postgres_ledger [--url postgresql://postgres@127.0.0.1:5432/postgres]
        [--records 200000] [--output bench/results/postgres-ledger.md]

Runs in a database of its own on the server at --url (created, migrated with the gateway's own
migrations, dropped at the end). Records are a gateway's: 50 tenants with a key each, three
models, a request id each. Four figures:

1. one writer: `PostgresUsageBackend.write` in batches of the ledger's WRITE_RECORDS, one after
   the other, as one gateway's background flush sends them;
2. four writers at once, each its own pool (four gateway instances on one database);
3. the same records written again (a replayed log, a retried flush): every one is skipped,
   and nothing is counted twice;
4. through the ledger: requests finished into its write-ahead log, then one flush (reading the
   log's segment and writing it), as the gateway does every flush interval.

Prints a Markdown report and writes it to --output, with a PASS/FAIL line for the target.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench import machine
from bench.postgres_db import own_database
from gateway.core.context import RequestContext
from gateway.postgres.database import PostgresDatabase
from gateway.usage.backend import UsageFilter
from gateway.usage.ledger import WRITE_RECORDS, UsageLedger
from gateway.usage.postgres_backend import PostgresUsageBackend
from gateway.usage.records import UsageRecord
from gateway.usage.wal import WriteAheadLog

TARGET_RECORDS_PER_S = 5_000
WRITERS = 4
TENANTS = 50
MODELS = ("base", "tenant-a", "tenant-b")
BUDGET_S = 30.0  # a bench measures throughput, not the gateway's outage budget
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUTPUT = Path(__file__).with_name("results") / "postgres-ledger.md"


def make_records(count: int, writer: str) -> list[UsageRecord]:
    now = time.time()
    return [
        UsageRecord(
            f"{writer}-{number:x}",
            uuid.uuid4().hex,
            now,
            f"tenant_{number % TENANTS}",
            f"key_{number % TENANTS}",
            "/v1/chat/completions",
            MODELS[number % len(MODELS)],
            "base",
            "http://127.0.0.1:8000",
            number % 2 == 0,
            200,
            120,
            64,
            16,
            25.0,
            5.0,
            False,
            False,
        )
        for number in range(count)
    ]


def backend(url: str) -> PostgresUsageBackend:
    return PostgresUsageBackend(PostgresDatabase(url, BUDGET_S), BUDGET_S)


async def write_all(writer: PostgresUsageBackend, records: list[UsageRecord]) -> None:
    for start in range(0, len(records), WRITE_RECORDS):
        await writer.write(records[start : start + WRITE_RECORDS])


async def records_per_s(url: str, batches: list[list[UsageRecord]]) -> float:
    """All `batches` written at once, each by a writer of its own; records per second."""
    writers = [backend(url) for _ in batches]
    await asyncio.gather(*(writer.ping() for writer in writers))  # pools open, schema checked
    started = time.perf_counter()
    await asyncio.gather(*(write_all(w, b) for w, b in zip(writers, batches, strict=True)))
    elapsed = time.perf_counter() - started
    for writer in writers:
        await writer.close()
    return sum(len(batch) for batch in batches) / elapsed


async def through_the_ledger(url: str, count: int, directory: Path) -> float:
    """Requests finished into the ledger's log, then one flush; records per second of it."""
    ledger = UsageLedger(backend(url), WriteAheadLog(directory, 0.05))
    await ledger.start()
    for number in range(count):
        ctx = RequestContext(
            uuid.uuid4().hex,
            endpoint="/v1/chat/completions",
            tenant_id=f"tenant_{number % TENANTS}",
            key_id=f"key_{number % TENANTS}",
            public_model=MODELS[number % len(MODELS)],
            status=200,
        )
        ctx.usage = {"prompt_tokens": 120, "completion_tokens": 16}
        ledger.finished(ledger.delivery(ctx, _nowhere), 0.01)
    started = time.perf_counter()
    await ledger.flush()
    elapsed = time.perf_counter() - started
    await ledger.close()
    return count / elapsed


async def _nowhere(message: object) -> None:
    pass


async def stored_requests(url: str) -> int:
    reader = backend(url)
    rows = await reader.read(UsageFilter())
    await reader.close()
    return sum(counts.requests for _, counts in rows)


async def measure(url: str, count: int) -> list[tuple[str, int, float]]:
    """(what, records, records per second) per figure; checks that nothing was doubled."""
    single = make_records(count, "one")
    many = [make_records(count // WRITERS, f"w{index}") for index in range(WRITERS)]
    figures = [
        (f"one writer, batches of {WRITE_RECORDS}", count, await records_per_s(url, [single])),
        (f"{WRITERS} writers at once", count, await records_per_s(url, many)),
        ("the same records again (all skipped)", count, await records_per_s(url, [single])),
    ]
    with tempfile.TemporaryDirectory() as directory:
        ledger_count = min(count, 50_000)
        figures.append(
            (
                "through the ledger (log, then one flush)",
                ledger_count,
                await through_the_ledger(url, ledger_count, Path(directory)),
            )
        )
    expected = count + WRITERS * (count // WRITERS) + min(count, 50_000)
    assert await stored_requests(url) == expected, "a record was lost or counted twice"
    return figures


def report(figures: list[tuple[str, int, float]], server: str, command: str) -> str:
    slowest_write = min(rate for _, _, rate in figures)
    verdict = "PASS" if slowest_write >= TARGET_RECORDS_PER_S else "FAIL"
    described = machine.describe()
    lines = [
        "# Postgres ledger: records per second",
        "",
        f"Re-run: `{command}`",
        "",
        f"{described['date']}, {described['nproc']} cores ({described['cpu_model']}), "
        f"{described['memory_gib']} GiB, Python {described['python']}, {server}, "
        "on the machine's own disk, next to the other work on it.",
        "",
        "| write | records | records/s |",
        "|---|---:|---:|",
        *(f"| {what} | {records:,} | {rate:,.0f} |" for what, records, rate in figures),
        "",
        f"{verdict}: the slowest figure, {slowest_write:,.0f} records/s, against the target of "
        f"{TARGET_RECORDS_PER_S:,} records/s (issue 18). Every record is one row of "
        "`usage_records` and counted into its `usage_daily` row in the same transaction; the "
        "daily rows read back equal the records written, none doubled by the replay.",
        "",
    ]
    return "\n".join(lines)


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a server the bench may add to")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    command = ".venv/bin/python -m bench.postgres_ledger" + (
        f" --records {args.records}" if args.records != 200_000 else ""
    )
    with own_database(args.url) as url:
        figures = asyncio.run(measure(url, args.records))
    text = report(figures, server_version(args.url), command)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
