"""The ledger's in-process side: an O(1) buffer on the hot path, flushed in the background.

`record` only adds to a dict keyed by (day, tenant, key, model), so a burst of requests costs
memory per distinct row, not per request. `run` flushes it every interval in one round trip
(one Redis pipeline or one SQLite transaction); `close` flushes what is left at shutdown.

A failed flush keeps its batches and retries them, unchanged and before anything newer, on
the next flush; the store applies each batch once (see `Batch`), so neither a failure nor a
lost reply loses or doubles a count. While batches wait, new requests keep merging into the
buffer. Memory is bounded by `max_pending_entries` rows: past it, requests that would open a
new row are dropped and counted in the log. Failures are logged once per LOG_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import islice

from gateway.store_health import StoreHealth
from gateway.usage.backend import Batch, UsageBackend, UsageFilter
from gateway.usage.counts import UNRESOLVED_MODEL, UsageCounts, UsageKey

logger = logging.getLogger("gateway.usage")

LOG_INTERVAL_S = 60.0
# Rows per batch: a Redis batch is one script, and a short script keeps Redis responsive.
BATCH_ROWS = 500


class UsageLedger:
    def __init__(
        self,
        backend: UsageBackend,
        flush_interval_s: float = 1.0,
        max_pending_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._flush_interval_s = flush_interval_s
        self._max_pending_entries = max_pending_entries
        self._clock = clock
        self._writer_id = uuid.uuid4().hex
        self._sequence = 0
        self._buffer: dict[UsageKey, UsageCounts] = {}
        self._unacknowledged: list[Batch] = []
        self._unacknowledged_rows = 0
        self._flush_lock = asyncio.Lock()
        self._day = ""
        self._day_ends_at = 0.0
        self._dropped = 0
        self._failing = False
        self._failure_log = _Throttle(LOG_INTERVAL_S)
        self._dropped_log = _Throttle(LOG_INTERVAL_S)

    def record(
        self,
        tenant_id: str | None,
        key_id: str | None,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        status: int,
    ) -> None:
        """Count one finished request. Requests without a tenant (auth off, or failed) are
        not attributed to anyone, so they are not recorded; `model` None: not resolved."""
        if tenant_id is None or key_id is None:
            return
        key = UsageKey(self._today(), tenant_id, key_id, model or UNRESOLVED_MODEL)
        counts = self._buffer.get(key)
        if counts is None:
            if len(self._buffer) + self._unacknowledged_rows >= self._max_pending_entries:
                self._dropped += 1
                return
            counts = self._buffer[key] = UsageCounts()
        counts.add_request(prompt_tokens, completion_tokens, status)

    def _today(self) -> str:
        """The UTC day, recomputed only when a day ends."""
        now = self._clock()
        if now >= self._day_ends_at:
            today = datetime.fromtimestamp(now, UTC).date()
            self._day = today.isoformat()
            midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
            self._day_ends_at = (midnight + timedelta(days=1)).timestamp()
        return self._day

    async def flush(self) -> None:
        """Write all counts recorded so far; raise if the store fails (they stay for a retry)."""
        async with self._flush_lock:
            if self._unacknowledged:
                await self._write_unacknowledged()
            if self._buffer:
                self._cut_batches()
                await self._write_unacknowledged()

    def _cut_batches(self) -> None:
        rows = iter(self._buffer.items())
        while chunk := dict(islice(rows, BATCH_ROWS)):
            self._sequence += 1
            self._unacknowledged.append(Batch(self._writer_id, self._sequence, chunk))
        self._unacknowledged_rows = len(self._buffer)
        self._buffer = {}

    async def _write_unacknowledged(self) -> None:
        await self._backend.write(self._unacknowledged)
        self._unacknowledged = []
        self._unacknowledged_rows = 0

    async def run(self) -> None:
        """Flush every interval until cancelled; a failure is logged and retried next time."""
        while True:
            await asyncio.sleep(self._flush_interval_s)
            await self._flush_and_log()

    async def _flush_and_log(self) -> None:
        try:
            await self.flush()
        except Exception as error:
            if self._failure_log.due(force=not self._failing):
                logger.warning(
                    "usage ledger: cannot write to the store, keeping %d rows for a retry: %r",
                    len(self._buffer) + self._unacknowledged_rows,
                    error,
                )
            self._failing = True
        else:
            if self._failing:
                logger.warning("usage ledger: the store answers again; all counts written")
            self._failing = False
        if self._dropped and self._dropped_log.due():
            logger.warning(
                "usage ledger: %d requests not counted: more than %d rows waiting for the store",
                self._dropped,
                self._max_pending_entries,
            )
            self._dropped = 0

    @property
    def health(self) -> StoreHealth:
        return self._backend.health

    async def ping(self) -> None:
        await self._backend.ping()

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        """The stored rows that match. This instance flushes first, so its own requests are
        in; other instances' are at most one flush interval behind."""
        await self._flush_and_log()
        return await self._backend.read(usage_filter)

    async def close(self) -> None:
        """Flush what is left, then close the store; what cannot be written is logged."""
        try:
            await self.flush()
        except Exception as error:
            lost = UsageCounts()
            for batch in self._unacknowledged:
                for counts in batch.counts.values():
                    lost.merge(counts)
            for counts in self._buffer.values():
                lost.merge(counts)
            logger.error("usage ledger: at shutdown, could not write %s: %r", lost, error)
        await self._backend.close()


class _Throttle:
    """Says yes at most once per interval, so a long outage logs a line a minute, not a second."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last = -interval_s

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last < self._interval_s:
            return False
        self._last = now
        return True
