"""The shared limiter: exact limits across gateway instances, one Redis round trip per request.

`acquire` runs the RESERVE script under the configured timeout and raises
`SharedLimiterUnavailable` when Redis does not answer in time, so the failure policy can act.
`release` only queues the settlement: the next reservation of this instance carries up to
`MAX_CARRIED` queued settlements in its own round trip (so under load settling costs no round
trip at all, and a client's next request never finds its previous one still counted), and
whatever no request picked up within `LINGER_S` goes out as a batch from a background task,
which also renews the leases of requests still running. See redis_scripts.py for the algorithm.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.limits import redis_scripts
from gateway.limits.headers import WindowState, rate_limit_headers
from gateway.limits.periods import Period
from gateway.limits.plan import Plan
from gateway.limits.reservation import (
    CONCURRENCY_RETRY_S,
    KIND_BY_NUMBER,
    WINDOW_S,
    Kind,
    LimitExceeded,
    Reservation,
    SharedLimiterUnavailable,
)
from gateway.limits.resp import Arg, PipelinedRedis, RedisReplyError
from gateway.limits.stats import LimiterStats, ThrottledWarning

REDIS_FAILURES = (RedisReplyError, OSError, TimeoutError)  # ConnectionError is an OSError
# Settlement and renewal are off the request path: they may wait longer than a request would.
BACKGROUND_TIMEOUT_S = 2.0
MAX_CARRIED = 2  # settlements a reservation carries: more than one, to drain the queue
LINGER_S = 0.005  # how long a settlement waits for a reservation to carry it
MAX_BATCH = 500  # settlements per SETTLE call: keeps each script run around a millisecond
MAX_PENDING = 100_000  # settlements queued while Redis is away; older ones are dropped
GIVE_UP_AFTER_S = 120.0  # a batch failing this long is dropped: its window and leases are over
_BUDGET_KEY_GRACE_S = 86400  # budget counters outlive their month by a day, for inspection
_NO_BATCH = ("", 0)


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(slots=True)
class _Batch:
    marker: str  # the key the scripts set, so that the batch counts once however often sent
    settlements: list[tuple[Reservation, int]]
    created_at: float = field(default_factory=time.monotonic)

    def script_args(self) -> list[Arg]:
        args: list[Arg] = [self.marker, len(self.settlements)]
        for reservation, used in self.settlements:
            plan, period = reservation.plan, reservation.period
            args += (reservation.id, reservation.admitted_at, reservation.tokens, used)
            args += (period.day, period.month)
            args.append(len(plan.scopes))
            args += plan.script_args
        return args


_RESERVE = _Script(redis_scripts.RESERVE)
_SETTLE = _Script(redis_scripts.SETTLE)
_RENEW = _Script(redis_scripts.RENEW)


class RedisLimiter:
    def __init__(
        self,
        url: str,
        prefix: str,
        timeout_s: float,
        lease_ttl_s: float,
        retry_interval_s: float,
        stats: LimiterStats,
    ) -> None:
        # A request gets one attempt within its timeout; background tasks retry on their own.
        self._redis = PipelinedRedis(url, BACKGROUND_TIMEOUT_S, BACKGROUND_TIMEOUT_S)
        self._prefix = prefix + "rl:"
        self._timeout_s = timeout_s
        self._lease_ttl_s = lease_ttl_s
        self._retry_interval_s = retry_interval_s
        self._stats = stats
        self._common_args = (self._prefix, str(int(WINDOW_S * 1_000_000)))
        self._lease_ttl_us = str(int(lease_ttl_s * 1_000_000))
        self._pending: list[tuple[Reservation, int]] = []
        self._unsent: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None
        self._closing = False
        self._live: weakref.WeakValueDictionary[str, Reservation] = weakref.WeakValueDictionary()
        self._tasks: list[asyncio.Task[None]] = []
        self._warning = ThrottledWarning(10.0)

    async def acquire(
        self, plan: Plan, reservation_id: str, tokens: int, period: Period
    ) -> Reservation:
        carried: Sequence[Arg] = _NO_BATCH
        batch = None
        if self._pending:
            batch = _Batch(self._marker(), self._pending[:MAX_CARRIED])
            del self._pending[:MAX_CARRIED]
            carried = batch.script_args()
        args: list[Arg] = [
            *self._common_args,
            self._lease_ttl_us,
            int(period.month_ends_at) + _BUDGET_KEY_GRACE_S,
            period.day,
            period.month,
            reservation_id,
            tokens,
            len(plan.scopes),
            *plan.script_args,
            *carried,
        ]
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._run(_RESERVE, args)
        except REDIS_FAILURES as error:
            if batch is not None:  # it may or may not have been applied: its marker knows
                self._unsent.append(batch)
                self._wake.set()
            raise SharedLimiterUnavailable(repr(error)) from error
        if reply[0] == 0:
            raise _exceeded(plan, reply, tokens, period)
        requests = (reply[1], reply[2], reply[3] / 1e6) if reply[1] >= 0 else None
        token_state: WindowState | None = (
            (reply[4], reply[5], reply[6] / 1e6) if reply[4] >= 0 else None
        )
        headers = rate_limit_headers(requests, token_state)
        reservation = Reservation(
            reservation_id, tokens, plan, period, self, headers, reply[7], reply[8]
        )
        if plan.leased:
            self._live[reservation_id] = reservation
        return reservation

    def release(self, reservation: Reservation, used_tokens: int) -> None:
        self._live.pop(reservation.id, None)
        if len(self._pending) >= MAX_PENDING:
            del self._pending[:MAX_BATCH]
            self._stats.dropped(MAX_BATCH)
        self._pending.append((reservation, used_tokens))
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._wake.set)

    async def start(self) -> None:
        """Load the scripts now, so that the first requests need one round trip, not three."""
        try:
            async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
                for script in (_RESERVE, _SETTLE, _RENEW):
                    await self._redis.call("SCRIPT", "LOAD", script.source)
        except REDIS_FAILURES as error:
            self._warning.warn("rate limiter: Redis not reachable at start: %r", error)
        self._tasks = [
            asyncio.create_task(self._settle_forever()),
            asyncio.create_task(self._renew_forever()),
        ]

    async def close(self) -> None:
        """Stop the background tasks, send what is still queued, and disconnect."""
        self._closing = True
        if self._linger is not None:
            self._linger.cancel()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=BACKGROUND_TIMEOUT_S)
        self._batch_pending()
        with contextlib.suppress(*REDIS_FAILURES):
            async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
                while self._unsent:
                    await self._settle(self._unsent[0])
                    self._unsent.popleft()
        self._stats.dropped(sum(len(batch.settlements) for batch in self._unsent))
        await self._redis.close()

    def _marker(self) -> str:
        return f"{self._prefix}settled:{uuid.uuid4().hex}"

    async def _run(self, script: _Script, args: Sequence[Arg]) -> Any:
        try:
            return await self._redis.call("EVALSHA", script.sha, 0, *args)
        except RedisReplyError as error:
            if not error.is_noscript:
                raise
            # Redis restarted or flushed its script cache since we last loaded it.
            await self._redis.call("SCRIPT", "LOAD", script.source)
            return await self._redis.call("EVALSHA", script.sha, 0, *args)

    def _batch_pending(self) -> None:
        while self._pending:
            settlements = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            self._unsent.append(_Batch(self._marker(), settlements))

    async def _settle(self, batch: _Batch) -> None:
        await self._run(_SETTLE, [*self._common_args, *batch.script_args()])

    async def _settle_forever(self) -> None:
        """Send what no reservation carried, oldest batch first; a batch that fails is sent
        again with the same marker (which makes the retry safe) until Redis takes it."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            self._linger = None
            self._batch_pending()
            while self._unsent and not self._closing:
                batch = self._unsent[0]
                try:
                    async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
                        await self._settle(batch)
                except REDIS_FAILURES as error:
                    self._stats.settlement_failed()
                    if time.monotonic() - batch.created_at > GIVE_UP_AFTER_S:
                        self._unsent.popleft()
                        self._stats.dropped(len(batch.settlements))
                        self._warning.warn("dropped rate-limit settlements: %r", error)
                    else:
                        self._warning.warn("rate-limit settlement failed, will retry: %r", error)
                        await asyncio.sleep(self._retry_interval_s)
                    continue
                self._unsent.popleft()
                self._batch_pending()

    async def _renew_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._lease_ttl_s / 3)
            held: dict[str, list[str]] = {}
            for reservation in list(self._live.values()):
                for scope in reservation.plan.scopes:
                    if scope.max_concurrent is not None:
                        key = f"{self._prefix}{scope.scope_id}:c"
                        held.setdefault(key, []).append(reservation.id)
            if not held:
                continue
            args: list[Arg] = [self._lease_ttl_us]
            for key, ids in held.items():
                args += (key, len(ids), *ids)
            try:
                async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
                    await self._run(_RENEW, args)
            except REDIS_FAILURES as error:
                self._stats.renewal_failed()
                self._warning.warn("could not renew concurrency leases: %r", error)


def _exceeded(plan: Plan, reply: list[int], tokens: int, period: Period) -> LimitExceeded:
    _, scope_number, kind_number, limit, used, retry_us = reply
    kind = KIND_BY_NUMBER[kind_number]
    retry: float | None
    if kind is Kind.CONCURRENT:
        retry = CONCURRENCY_RETRY_S if limit > 0 else None
    elif kind.is_budget:
        retry = period.seconds_left(kind is Kind.TOKENS_PER_MONTH) if tokens <= limit else None
    else:
        retry = retry_us / 1e6 if retry_us >= 0 else None
    requested = 1 if kind in (Kind.REQUESTS, Kind.CONCURRENT) else tokens
    return LimitExceeded(plan.scopes[scope_number - 1], kind, limit, used, requested, retry)
