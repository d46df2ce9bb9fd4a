"""The shared limiter: exact limits across gateway instances, one Redis round trip per request.

`acquire` runs the RESERVE script under the configured timeout and raises
`SharedLimiterUnavailable` when Redis does not answer in time, so the failure policy can act.
`release` only queues the settlement: the next reservation of this instance carries up to
`MAX_CARRIED` queued settlements in its own round trip (so under load settling costs no round
trip at all, and a client's next request never finds its previous one still counted), and
whatever no request picked up within `LINGER_S` goes out as a batch from a background task,
which also renews the leases of requests still running. See redis_scripts.py for the algorithm.

Every script call touches one keyspace, which it names as its one key (so that a Cluster
routes it, and refuses it with MOVED before it runs anywhere else): the limiter's prefix on
one server or under Sentinel, and on a Cluster the prefix with the tenant's hash tag, which
puts a tenant's and its keys' limits in one slot (`keyspace`). Settlements are queued per
keyspace, so that a reservation carries only its own keyspace's, and a batch or a renewal
covers one keyspace; the batches of different keyspaces go out side by side, so that a shard
failing over does not hold up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.core.context import random_id
from gateway.limits import redis_scripts
from gateway.limits.counters import KEPT_AFTER_MONTH_S, KEYSPACE
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
from gateway.limits.resp import Arg, RedisReplyError, open_servers
from gateway.limits.stats import LimiterStats, ThrottledWarning
from gateway.redis_client import keyspace, parse_redis_url

REDIS_FAILURES = (RedisReplyError, OSError, TimeoutError)  # ConnectionError is an OSError
# Settlement and renewal are off the request path: they may wait longer than a request would.
BACKGROUND_TIMEOUT_S = 2.0
MAX_CARRIED = 2  # settlements a reservation carries: more than one, to drain the queue
LINGER_S = 0.005  # how long a settlement waits for a reservation to carry it
MAX_BATCH = 500  # settlements per SETTLE call: keeps each script run around a millisecond
MAX_PENDING = 100_000  # settlements queued while Redis is away; older ones are dropped
GIVE_UP_AFTER_S = 120.0  # a batch failing this long is dropped: its window and leases are over
_NO_BATCH = ("", 0)


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(slots=True, eq=False)
class _Batch:
    keyspace: str  # of every settlement in it
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
        self._redis = open_servers(url, BACKGROUND_TIMEOUT_S, BACKGROUND_TIMEOUT_S)
        self._address = parse_redis_url(url)
        self._prefix = prefix + KEYSPACE
        self._timeout_s = timeout_s
        self._lease_ttl_s = lease_ttl_s
        self._retry_interval_s = retry_interval_s
        self._stats = stats
        self._window_us = str(int(WINDOW_S * 1_000_000))
        self._lease_ttl_us = str(int(lease_ttl_s * 1_000_000))
        # settlements not sent yet, by keyspace
        self._pending: dict[str, list[tuple[Reservation, int]]] = {}
        self._pending_count = 0
        self._unsent: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None
        self._closing = False
        self._live: weakref.WeakValueDictionary[str, Reservation] = weakref.WeakValueDictionary()
        self._tasks: list[asyncio.Task[None]] = []
        self._warning = ThrottledWarning(10.0)

    def _keyspace(self, plan: Plan) -> str:
        return keyspace(self._address, self._prefix, plan.tenant_id)

    async def acquire(
        self, plan: Plan, reservation_id: str, tokens: int, period: Period
    ) -> Reservation:
        space = self._keyspace(plan)
        carried: Sequence[Arg] = _NO_BATCH
        batch = None
        pending = self._pending.get(space)
        if pending:
            batch = _Batch(space, self._marker(space), pending[:MAX_CARRIED])
            self._take(space, len(batch.settlements))
            carried = batch.script_args()
        args: list[Arg] = [
            space,
            self._window_us,
            self._lease_ttl_us,
            int(period.month_ends_at) + KEPT_AFTER_MONTH_S,
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
                reply = await self._run(_RESERVE, space, args)
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
        if self._pending_count >= MAX_PENDING:
            fullest = max(self._pending, key=lambda space: len(self._pending[space]))
            dropped = min(MAX_BATCH, len(self._pending[fullest]))
            self._take(fullest, dropped)
            self._stats.dropped(dropped)
        self._pending.setdefault(self._keyspace(reservation.plan), []).append(
            (reservation, used_tokens)
        )
        self._pending_count += 1
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._wake.set)

    async def start(self) -> None:
        """Load the scripts now, so that the first requests need one round trip, not three."""
        try:
            async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
                for script in (_RESERVE, _SETTLE, _RENEW):
                    await self._redis.on_every_primary("SCRIPT", "LOAD", script.source)
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

    def _marker(self, space: str) -> str:
        return f"{space}settled:{random_id()}"

    def _take(self, space: str, count: int) -> None:
        """Remove the first `count` settlements queued for `space`."""
        pending = self._pending[space]
        del pending[:count]
        if not pending:
            del self._pending[space]
        self._pending_count -= count

    async def _run(self, script: _Script, space: str, args: Sequence[Arg]) -> Any:
        try:
            return await self._redis.call(space, "EVALSHA", script.sha, 1, space, *args)
        except RedisReplyError as error:
            if not error.is_noscript:
                raise
            # Redis restarted, failed over or flushed its script cache since we loaded it.
            await self._redis.call(space, "SCRIPT", "LOAD", script.source)
            return await self._redis.call(space, "EVALSHA", script.sha, 1, space, *args)

    def _batch_pending(self) -> None:
        for space, pending in self._pending.items():
            for first in range(0, len(pending), MAX_BATCH):
                settlements = pending[first : first + MAX_BATCH]
                self._unsent.append(_Batch(space, self._marker(space), settlements))
        self._pending.clear()
        self._pending_count = 0

    async def _settle(self, batch: _Batch) -> None:
        async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
            args = [batch.keyspace, self._window_us, *batch.script_args()]
            await self._run(_SETTLE, batch.keyspace, args)

    async def _settle_forever(self) -> None:
        """Send what no reservation carried, every batch at once; a batch that fails is sent
        again with the same marker (which makes the retry safe) until Redis takes it."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            self._linger = None
            self._batch_pending()
            while self._unsent and not self._closing:
                batches = list(self._unsent)
                outcomes = await asyncio.gather(
                    *(self._settle(batch) for batch in batches), return_exceptions=True
                )
                failure: BaseException | None = None
                for batch, outcome in zip(batches, outcomes, strict=True):
                    if outcome is None:
                        self._unsent.remove(batch)
                        continue
                    if not isinstance(outcome, REDIS_FAILURES):
                        raise outcome
                    failure = outcome
                    self._stats.settlement_failed()
                    if time.monotonic() - batch.created_at > GIVE_UP_AFTER_S:
                        self._unsent.remove(batch)
                        self._stats.dropped(len(batch.settlements))
                        self._warning.warn("dropped rate-limit settlements: %r", outcome)
                if failure is not None:
                    self._warning.warn("rate-limit settlement failed, will retry: %r", failure)
                    await asyncio.sleep(self._retry_interval_s)
                self._batch_pending()

    async def _renew_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._lease_ttl_s / 3)
            held: dict[str, dict[str, list[str]]] = {}  # keyspace -> leases key -> ids
            for reservation in list(self._live.values()):
                space = self._keyspace(reservation.plan)
                for scope in reservation.plan.scopes:
                    if scope.max_concurrent is not None:
                        key = f"{space}{scope.scope_id}:c"
                        held.setdefault(space, {}).setdefault(key, []).append(reservation.id)
            outcomes = await asyncio.gather(
                *(self._renew(space, leases) for space, leases in held.items()),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, REDIS_FAILURES):
                    self._stats.renewal_failed()
                    self._warning.warn("could not renew concurrency leases: %r", outcome)
                elif outcome is not None:
                    raise outcome

    async def _renew(self, space: str, leases: dict[str, list[str]]) -> None:
        args: list[Arg] = [self._lease_ttl_us]
        for key, ids in leases.items():
            args += (key, len(ids), *ids)
        async with asyncio.timeout(BACKGROUND_TIMEOUT_S):
            await self._run(_RENEW, space, args)


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
