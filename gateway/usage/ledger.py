"""The ledger's in-process side: a record per request, in the local log before its answer
leaves, and in the store within a flush interval.

The app wraps each request's `send` in a `Delivery` and hands it to `finished` when the
request is over. The delivery writes the request's provisional record to the log (gateway/
usage/wal.py) before the bytes that could deliver the answer leave: when a whole answer starts
(its usage is known by then) and, for a stream, when vLLM's usage is first known (before the
usage chunk or [DONE] leaves); that write is one os.write into the page cache. The entries
nothing waits for (a stream's start, and every final record) are buffered and go out with the
next such write, or within BUFFER_WRITE_S. So a request costs one system call
and a few microseconds, with no store round trip and no fsync on its path; a kill -9 can lose
only buffered entries, whose requests are then stored from their provisional record (aborted).
A request is first logged, buffered, as its upstream call starts: one that never answered is
stored as aborted too (status 0, no tokens), unless the kill came within BUFFER_WRITE_S of it.

`run_background` flushes every interval: it closes the log's current segment, stores the
final records of the closed segments (one write per segment, in a worker thread for the
reading) and deletes them. A segment stays until the store has taken it, so a failing store
loses nothing, and the stores ignore a record they hold already, so nothing is counted twice.
At start, the log of a process that died is claimed and stored, its requests that never
ended as their last provisional record (aborted).

If the log file cannot be written (disk full), final records wait in memory instead, at most
`max_pending_entries` of them; past that, requests are not counted, and the number is logged.
Failures are logged once per LOG_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.core.asgi import Message, Send
from gateway.core.context import RequestContext
from gateway.limits.estimate import MAX_TOKENS
from gateway.settings import StoreSettings, UsageSettings
from gateway.store_health import StoreHealth
from gateway.usage.backend import RecordFilter, UsageBackend, UsageFilter
from gateway.usage.counts import UNRESOLVED_MODEL, UsageCounts, UsageKey
from gateway.usage.records import UsageRecord
from gateway.usage.wal import FINAL, PROVISIONAL, Backlog, WriteAheadLog, records_in

logger = logging.getLogger("gateway.usage")

LOG_INTERVAL_S = 60.0
# How long a buffered entry (a final record, a stream's start) waits at most for the next
# write (a loop timer: no thread wakes for it).
BUFFER_WRITE_S = 0.005
# Records per store write: one SQLite transaction (its lock held about 20 ms), or one pipeline
# of Redis scripts.
WRITE_RECORDS = 1000


class Delivery:
    """A request's `send`, writing its provisional record to the log before the bytes that
    could deliver the answer: at the answer's start, and once vLLM's usage is known."""

    __slots__ = ("_ledger", "_send", "answered", "ctx", "record_id", "usage_seen")

    def __init__(self, ledger: UsageLedger, ctx: RequestContext, send: Send) -> None:
        self._ledger = ledger
        self._send = send
        self.ctx = ctx
        self.record_id: str | None = None  # set with the first provisional record
        self.usage_seen = False  # vLLM's usage was known before the client was sent more
        self.answered = False  # the answer's start has been sent
        ctx.upstream_starting = self.upstream_starting

    def upstream_starting(self) -> None:
        """The request goes to vLLM: from now on a kill leaves it recorded (aborted)."""
        if self.record_id is None:
            self._ledger.provisional(self)

    def __call__(self, message: Message) -> Awaitable[None]:
        """The inner `send`'s awaitable itself: no coroutine of its own per message."""
        if not self.usage_seen:
            if self.ctx.usage is not None:
                self.usage_seen = True
                self._ledger.provisional(self)
            elif not self.answered and message["type"] == "http.response.start":
                self.answered = True
                self._ledger.provisional(self)
        return self._send(message)


class UsageLedger:
    def __init__(
        self,
        backend: UsageBackend,
        wal: WriteAheadLog,
        flush_interval_s: float = 1.0,
        max_pending_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._wal = wal
        self._flush_interval_s = flush_interval_s
        self._max_pending_entries = max_pending_entries
        self._clock = clock
        self._ids = (f"{wal.writer_id}-{number:x}" for number in itertools.count(1))
        self._in_flight: dict[str, bytes] = {}  # record id -> its last provisional entry
        self._buffer_write: asyncio.TimerHandle | None = None
        self._backlogs: deque[Backlog] = deque()
        self._unlogged: list[bytes] = []  # final entries the log could not take
        self._flush_lock = asyncio.Lock()
        self._dropped = 0
        self._failing = False
        self._failure_log = _Throttle(LOG_INTERVAL_S)
        self._log_failure_log = _Throttle(LOG_INTERVAL_S)
        self._dropped_log = _Throttle(LOG_INTERVAL_S)

    @classmethod
    def from_settings(
        cls, backend: UsageBackend, settings: UsageSettings, store: StoreSettings
    ) -> UsageLedger:
        wal = WriteAheadLog(_log_directory(settings, store), settings.wal_fsync_interval_s)
        return cls(backend, wal, settings.flush_interval_s, settings.max_pending_entries)

    async def start(self) -> None:
        """Open the log, and claim those of the gateway processes that died (the first flush,
        at once, stores them)."""
        claimed = self._wal.open()
        if claimed:
            segments = sum(len(backlog.segments) for backlog in claimed)
            logger.warning(
                "usage ledger: storing the log of %d gateway processes that stopped before "
                "they stored it (%d segments in %s)",
                len(claimed),
                segments,
                self._wal.directory,
            )
        self._backlogs.extend(claimed)

    def delivery(self, ctx: RequestContext, send: Send) -> Delivery:
        return Delivery(self, ctx, send)

    def provisional(self, delivery: Delivery) -> None:
        """Log the request's record as it stands (what a restart stores if the gateway dies
        before `finished`). Requests without a tenant (auth off, or failed) are not charged to
        anyone, so they are not recorded."""
        ctx = delivery.ctx
        if ctx.tenant_id is None or ctx.key_id is None or not ctx.endpoint:
            return
        if delivery.record_id is None:
            delivery.record_id = next(self._ids)
        # A request on its way to vLLM, or a stream that starts, delivers nothing billable
        # yet: if the gateway dies now, it is an error (its tokens unknown: a cut stream's are
        # estimated), and its entry need not be out before anything leaves.
        in_flight = ctx.status == 0
        started_stream = ctx.stream and ctx.status == 200 and ctx.usage is None
        status = 0 if started_stream else ctx.status
        record = self._record(delivery.record_id, ctx, status, None, started_stream, True)
        entry = PROVISIONAL + record.to_json() + b"\n"
        self._in_flight[delivery.record_id] = entry
        if started_stream or in_flight:
            self._buffer(entry)
        else:
            self._write(entry)

    def finished(self, delivery: Delivery, seconds: float) -> None:
        """Log the final record of a request that ended (served, refused or failed)."""
        ctx = delivery.ctx
        if ctx.tenant_id is None or ctx.key_id is None:
            return
        record_id = delivery.record_id
        if record_id is None:
            record_id = next(self._ids)
        else:
            self._in_flight.pop(record_id, None)
        # a cut stream's usage is the pipeline's estimate, set after the relay's last send
        estimated = ctx.stream and ctx.usage is not None and not delivery.usage_seen
        record = self._record(record_id, ctx, ctx.status, seconds * 1000.0, estimated, False)
        self._buffer(FINAL + record.to_json() + b"\n")

    def _record(
        self,
        record_id: str,
        ctx: RequestContext,
        status: int,
        latency_ms: float | None,
        estimated: bool,
        aborted: bool,
    ) -> UsageRecord:
        assert ctx.tenant_id is not None and ctx.key_id is not None
        usage = ctx.usage or {}
        first_event_at = ctx.first_event_at
        return UsageRecord(  # positional: keywords take twice as long, on every request
            record_id,
            ctx.request_id,
            self._clock(),
            ctx.tenant_id,
            ctx.key_id,
            ctx.endpoint,
            ctx.public_model or UNRESOLVED_MODEL,
            ctx.upstream_model,
            ctx.replica,
            ctx.stream,
            status,
            _tokens(usage.get("prompt_tokens")),
            _cached_tokens(usage),
            _tokens(usage.get("completion_tokens")),
            latency_ms,
            None if first_event_at is None else (first_event_at - ctx.started) * 1000.0,
            estimated,
            aborted,
            ctx.base_model,
            ctx.adapter,
            ctx.finish_reason,
            ctx.safety_action,
        )

    def _buffer(self, entry: bytes) -> None:
        """An entry nothing waits for: out with the next write, at the latest BUFFER_WRITE_S
        from now."""
        if self._wal.buffer(entry):
            self._buffer_write = asyncio.get_running_loop().call_later(BUFFER_WRITE_S, self._write)

    def _write(self, entry: bytes = b"") -> None:
        """The buffer and `entry` into the log now. What it cannot take: final entries wait in
        memory for the store (up to max_pending_entries), provisional ones are given up."""
        unwritten = self._wal.write(entry)
        if not unwritten:
            return
        final = [line for line in unwritten.split(b"\n") if line.startswith(FINAL)]
        room = self._max_pending_entries - len(self._unlogged)
        self._unlogged += final[:room]
        self._dropped += max(0, len(final) - room)
        if self._log_failure_log.due():
            logger.error(
                "usage ledger: cannot write the log in %s; finished requests wait in memory "
                "(%d now), and are lost if the gateway dies",
                self._wal.directory,
                len(self._unlogged),
            )

    async def flush(self) -> None:
        """Store every request that ended so far; raise if the store fails (the requests stay
        for a retry, in the log or in memory)."""
        async with self._flush_lock:
            self._rotate()
            while self._backlogs:
                backlog = self._backlogs[0]
                records, unreadable = await asyncio.to_thread(backlog.records)
                if unreadable:
                    logger.error(
                        "usage ledger: %d unreadable lines in %s",
                        unreadable,
                        ", ".join(path.name for path in backlog.segments),
                    )
                await self._store(records)
                self._wal.remove(backlog)
                self._backlogs.popleft()
            if self._unlogged:
                entries, self._unlogged = self._unlogged, []
                try:
                    await self._store(records_in(entries, final_only=True)[0])
                except BaseException:
                    self._unlogged[:0] = entries
                    raise

    def _rotate(self) -> None:
        """Close the log's current segment for the store, and log the requests in flight
        again in the new one (at once: the closed one goes once it is stored)."""
        self._write()
        try:
            backlog = self._wal.rotate()
        except OSError as error:
            if self._log_failure_log.due():
                logger.error("usage ledger: cannot start a new log segment: %r", error)
            return
        if backlog is not None:
            self._backlogs.append(backlog)
            self._write(b"".join(self._in_flight.values()))

    async def _store(self, records: list[UsageRecord]) -> None:
        for start in range(0, len(records), WRITE_RECORDS):
            await self._backend.write(records[start : start + WRITE_RECORDS])

    async def run_background(self) -> None:
        """Flush at once (what a dead process left), then every interval until cancelled; a
        failure is logged and retried next time."""
        while True:
            await self._flush_and_log()
            await asyncio.sleep(self._flush_interval_s)

    async def _flush_and_log(self) -> None:
        try:
            await self.flush()
        except Exception as error:
            if self._failure_log.due(force=not self._failing):
                logger.warning(
                    "usage ledger: cannot write to the store, keeping %d log segments and %d "
                    "records in memory for a retry: %r",
                    sum(len(backlog.segments) for backlog in self._backlogs),
                    len(self._unlogged),
                    error,
                )
            self._failing = True
        else:
            if self._failing:
                logger.warning("usage ledger: the store answers again; all records written")
            self._failing = False
        if self._dropped and self._dropped_log.due():
            logger.warning(
                "usage ledger: %d requests not recorded: the log cannot be written and more "
                "than %d records wait in memory",
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
        """The stored daily rows that match. This instance flushes first, so its own requests
        are in; other instances' are at most one flush interval behind."""
        await self._flush_and_log()
        return await self._backend.read(usage_filter)

    async def read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        """The tenant's stored records in the days asked for, in no particular order; this
        instance flushes first, as for `read`."""
        await self._flush_and_log()
        return await self._backend.read_records(record_filter)

    async def close(self) -> None:
        """Flush what is left, then close the log and the store. What cannot be stored stays
        in the log for the next start (records kept in memory are lost, and logged)."""
        if self._buffer_write is not None:
            self._buffer_write.cancel()
        stored = False
        try:
            await self.flush()
            stored = not self._in_flight and self._wal.empty
        except Exception as error:
            lost = UsageCounts()
            for record in records_in(self._unlogged, final_only=True)[0]:
                lost.merge(record.counts())
            logger.error(
                "usage ledger: at shutdown, could not store %d log segments (they stay in %s "
                "for the next start) nor %s kept in memory: %r",
                sum(len(backlog.segments) for backlog in self._backlogs),
                self._wal.directory,
                lost,
                error,
            )
        for backlog in self._backlogs:
            self._wal.release(backlog)
        self._wal.close(stored)
        await self._backend.close()


def _log_directory(settings: UsageSettings, store: StoreSettings) -> Path:
    """In `usage.wal_dir` (by default beside the SQLite file), a directory per store: a
    gateway claims the logs of dead gateways of its own store only, never another's."""
    sqlite_path = store.sqlite_path
    base = settings.wal_dir or sqlite_path.with_name(f"{sqlite_path.name}.usage-wal")
    if store.postgres_url:
        kind, identity = "postgres", store.postgres_url
    elif store.redis_url:
        kind, identity = "redis", f"{store.redis_url}\n{store.redis_prefix}"
    else:
        kind, identity = "sqlite", str(sqlite_path.resolve())
    return base / f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _tokens(value: Any) -> int:
    """A token count from vLLM's usage, as a small non-negative int whatever was sent."""
    if type(value) is int:  # not a bool, a float, a string ...
        return value if 0 <= value <= MAX_TOKENS else min(max(0, value), MAX_TOKENS)
    return 0


def _cached_tokens(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details")
    return _tokens(details.get("cached_tokens")) if type(details) is dict else 0


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
