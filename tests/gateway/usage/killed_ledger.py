"""A gateway's ledger killed mid-flight: `python -m tests.gateway.usage.killed_ledger DB WAL`.

It records requests in every state a kill -9 can find them in, flushes once in the middle (so
requests in flight are carried into the next log segment), and SIGKILLs itself; its requests
are named by request id (see test_ledger_log.py for what the next start must store):

- ``done-before-flush``: answered and ended before the flush (10 + 5 tokens)
- ``done-and-logged``: answered and ended, its final entry written (the buffer's interval)
- ``done-just-now``: answered and ended, its final entry still buffered at the kill
- ``stream-started``: a stream whose start was sent before the flush, no usage yet
- ``stream-with-usage``: a stream whose usage (7 + 3) was known and sent
- ``whole-sent``: a whole answer (4 + 2) sent, not yet `finished`
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from gateway.usage.ledger import BUFFER_WRITE_S, UsageLedger
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.gateway.usage.conftest import (
    answer_starts,
    events_sent,
    inference,
    new_ledger,
)


async def answered(ledger: UsageLedger, request_id: str) -> None:
    """A whole answer of 10 + 5 tokens sent, and the request ended."""
    ctx = inference("t1", "k1", "m1", 10, 5, request_id=request_id)
    ledger.finished(await answer_starts(ledger, ctx), 0.01)


async def main(database: Path, wal_dir: Path) -> None:
    ledger = new_ledger(SqliteUsageBackend(database), wal_dir)
    await ledger.start()
    await answered(ledger, "done-before-flush")
    stream = inference("t1", "k1", "m1", stream=True, request_id="stream-started")
    await answer_starts(ledger, stream)
    await ledger.flush()
    await answered(ledger, "done-and-logged")
    await asyncio.sleep(10 * BUFFER_WRITE_S)
    with_usage = inference("t1", "k1", "m1", stream=True, request_id="stream-with-usage")
    delivery = await answer_starts(ledger, with_usage)
    with_usage.usage = {"prompt_tokens": 7, "completion_tokens": 3}
    await events_sent(delivery)
    await answer_starts(ledger, inference("t1", "k1", "m1", 4, 2, request_id="whole-sent"))
    await answered(ledger, "done-just-now")
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
