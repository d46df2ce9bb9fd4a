"""The in-process limiter: the Redis limiter's semantics for one gateway process.

It serves when no Redis is configured, and as the fail-open fallback while Redis is away (each
instance then enforces the full limits on its own). Requests and tokens per minute are sliding
window logs, concurrency slots are leases, budgets are counters per calendar period: the same
algorithm as the Redis script (see redis_scripts.py), on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from typing import Any

from gateway.limits.headers import WindowState, rate_limit_headers
from gateway.limits.periods import Period
from gateway.limits.plan import Plan, ScopeLimits
from gateway.limits.reservation import (
    CONCURRENCY_RETRY_S,
    WINDOW_S,
    Kind,
    LimitExceeded,
    Reservation,
)


class SlidingLog:
    """The admissions of the last window, oldest first, each as [time, weight, reservation id].

    Every entry is added once and trimmed once, so keeping the total is O(1) amortised.
    """

    __slots__ = ("by_id", "entries", "total")

    def __init__(self) -> None:
        self.entries: deque[list[Any]] = deque()
        self.total = 0
        self.by_id: dict[str, list[Any]] = {}

    def trim(self, cutoff: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            _, weight, reservation_id = entries.popleft()
            self.total -= weight
            self.by_id.pop(reservation_id, None)

    def add(self, at: float, weight: int, reservation_id: str | None) -> None:
        entry = [at, weight, reservation_id]
        self.entries.append(entry)
        self.total += weight
        if reservation_id is not None:
            self.by_id[reservation_id] = entry

    def reweigh(self, reservation_id: str, weight: int, cutoff: float) -> bool:
        """Change a reservation's weight while it is still in the window."""
        entry = self.by_id.get(reservation_id)
        if entry is None or entry[0] <= cutoff:
            return False
        self.total += weight - entry[1]
        entry[1] = weight
        return True

    def frees_at(self, excess: int) -> float:
        """When the oldest entries holding at least `excess` weight will have left."""
        freed = 0
        at: float
        for at, weight, _ in self.entries:
            freed += weight
            if freed >= excess:
                return at + WINDOW_S
        at = self.entries[-1][0]
        return at + WINDOW_S


class LocalLimiter:
    def __init__(self, lease_ttl_s: float) -> None:
        self._lease_ttl_s = lease_ttl_s
        self._requests: dict[str, SlidingLog] = {}
        self._tokens: dict[str, SlidingLog] = {}
        self._leases: dict[str, dict[str, float]] = {}  # scope -> reservation id -> expiry
        self._budgets: dict[tuple[str, Kind], list[Any]] = {}  # -> [period id, tokens used]
        self._live: weakref.WeakValueDictionary[str, Reservation] = weakref.WeakValueDictionary()
        self._renewal: asyncio.Task[None] | None = None

    async def acquire(
        self, plan: Plan, reservation_id: str, tokens: int, period: Period
    ) -> Reservation:
        now = time.monotonic()
        cutoff = now - WINDOW_S
        for scope in plan.scopes:
            self._check(scope, tokens, period, now, cutoff)
        requests: WindowState | None = None
        token_state: WindowState | None = None
        for scope in plan.scopes:
            if scope.requests_per_minute is not None:
                log = self._requests[scope.scope_id]
                log.add(now, 1, None)
                state = _state(scope.requests_per_minute, log, now)
                if requests is None or state[1] < requests[1]:
                    requests = state
            if scope.tokens_per_minute is not None:
                log = self._tokens[scope.scope_id]
                log.add(now, tokens, reservation_id)
                state = _state(scope.tokens_per_minute, log, now)
                if token_state is None or state[1] < token_state[1]:
                    token_state = state
            if scope.max_concurrent is not None:
                self._leases[scope.scope_id][reservation_id] = now + self._lease_ttl_s
            for kind in _BUDGETS:
                if _budget_limit(scope, kind) is not None:
                    self._budgets[scope.scope_id, kind][1] += tokens
        headers = rate_limit_headers(requests, token_state)
        reservation = Reservation(reservation_id, tokens, plan, period, self, headers)
        if plan.leased:
            self._live[reservation_id] = reservation
        return reservation

    def release(self, reservation: Reservation, used_tokens: int) -> None:
        now = time.monotonic()
        delta = used_tokens - reservation.tokens
        for scope in reservation.plan.scopes:
            if scope.tokens_per_minute is not None:
                # a request that outlived the window keeps its estimate there, as with Redis
                self._tokens[scope.scope_id].reweigh(reservation.id, used_tokens, now - WINDOW_S)
            if scope.max_concurrent is not None:
                self._leases[scope.scope_id].pop(reservation.id, None)
            for kind in _BUDGETS:
                budget = self._budgets.get((scope.scope_id, kind))
                if budget is not None and budget[0] == _period_id(reservation.period, kind):
                    budget[1] += delta
        self._live.pop(reservation.id, None)

    async def start(self) -> None:
        self._renewal = asyncio.create_task(self._renew_leases())

    async def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal

    def _check(
        self, scope: ScopeLimits, tokens: int, period: Period, now: float, cutoff: float
    ) -> None:
        limit = scope.requests_per_minute
        if limit is not None:
            log = self._requests.setdefault(scope.scope_id, SlidingLog())
            log.trim(cutoff)
            if log.total + 1 > limit:
                retry = log.entries[0][0] + WINDOW_S - now if limit > 0 else None
                raise LimitExceeded(scope, Kind.REQUESTS, limit, log.total, 1, retry)
        limit = scope.tokens_per_minute
        if limit is not None:
            log = self._tokens.setdefault(scope.scope_id, SlidingLog())
            log.trim(cutoff)
            if log.total + tokens > limit:
                fits = tokens <= limit
                retry = log.frees_at(log.total + tokens - limit) - now if fits else None
                raise LimitExceeded(scope, Kind.TOKENS, limit, log.total, tokens, retry)
        limit = scope.max_concurrent
        if limit is not None:
            leases = self._leases.setdefault(scope.scope_id, {})
            for reservation_id in [r for r, expiry in leases.items() if expiry <= now]:
                del leases[reservation_id]
            if len(leases) >= limit:
                retry = CONCURRENCY_RETRY_S if limit > 0 else None
                raise LimitExceeded(scope, Kind.CONCURRENT, limit, len(leases), 1, retry)
        for kind in _BUDGETS:
            limit = _budget_limit(scope, kind)
            if limit is None:
                continue
            period_id = _period_id(period, kind)
            budget = self._budgets.setdefault((scope.scope_id, kind), [period_id, 0])
            if budget[0] != period_id:
                budget[:] = [period_id, 0]
            if budget[1] + tokens > limit:
                retry = (
                    period.seconds_left(kind is Kind.TOKENS_PER_MONTH) if tokens <= limit else None
                )
                raise LimitExceeded(scope, kind, limit, budget[1], tokens, retry)

    async def _renew_leases(self) -> None:
        """Keep the leases of reservations still in progress from expiring."""
        while True:
            await asyncio.sleep(self._lease_ttl_s / 3)
            expiry = time.monotonic() + self._lease_ttl_s
            for reservation in list(self._live.values()):
                for scope in reservation.plan.scopes:
                    leases = self._leases.get(scope.scope_id)
                    if leases is not None and reservation.id in leases:
                        leases[reservation.id] = expiry


_BUDGETS = (Kind.TOKENS_PER_DAY, Kind.TOKENS_PER_MONTH)


def _budget_limit(scope: ScopeLimits, kind: Kind) -> int | None:
    return scope.tokens_per_day if kind is Kind.TOKENS_PER_DAY else scope.tokens_per_month


def _period_id(period: Period, kind: Kind) -> str:
    return period.day if kind is Kind.TOKENS_PER_DAY else period.month


def _state(limit: int, log: SlidingLog, now: float) -> WindowState:
    return (limit, limit - log.total, log.entries[0][0] + WINDOW_S - now)
