"""Rate limits and token quotas per key and per tenant, exact across gateway instances.

The pipeline's side is narrow::

    admission = limiter.admit(principal, surface.estimate_tokens(request, default_max))
    await admission.cleared()                    # before the upstream call
    ...                                          # the upstream call
    reservation = await admission.confirmed()    # before the answer: x-ratelimit-* headers
    ...                                          # the relay
    admission.settle(tokens_used(ctx.usage))     # always, also after failures

`confirmed` raises GatewayError 429 (``rate_limit_exceeded`` or ``insufficient_quota``) when
a limit refuses the request, or 503 when Redis is in trouble and the policy is fail-closed.
Usually `cleared` already waits for that answer; far from every limit, it does not, and the
Redis round trip overlaps vLLM's (gateway/limits/early.py). `reserve` is the one-step form.
`settle` never waits: the local limiter applies it at once; the Redis one hands it to the
next reservation of this instance, or to a background batch within a few milliseconds.
"""

from __future__ import annotations

import itertools
import secrets
import time
from functools import partial

from gateway.core.errors import GatewayError
from gateway.limits.early import Admission, SpareRoom, SpareRooms
from gateway.limits.estimate import MAX_TOKENS, estimated_usage, tokens_used
from gateway.limits.headers import limit_error
from gateway.limits.local_limiter import LocalLimiter
from gateway.limits.periods import Calendar
from gateway.limits.plan import PlanCache
from gateway.limits.policy import FailoverLimiter
from gateway.limits.redis_limiter import RedisLimiter
from gateway.limits.reservation import Backend, LimitExceeded, Reservation
from gateway.limits.stats import LimiterStats
from gateway.peers import Peers
from gateway.settings import LimitsSettings, StoreSettings
from gateway.tenancy.auth import Principal
from gateway.tenancy.models import Limits

__all__ = [
    "Admission",
    "Limiter",
    "LimiterStats",
    "Reservation",
    "estimated_usage",
    "open_limiter",
    "tokens_used",
]


class Limiter:
    """Admits requests under their key's and tenant's limits; one per gateway process."""

    def __init__(
        self,
        backend: Backend,
        defaults: Limits,
        stats: LimiterStats,
        early_dispatch: bool = True,
        peers: Peers | None = None,
    ) -> None:
        self._backend = backend
        self._early_dispatch = early_dispatch
        self._plans = PlanCache(defaults)
        self._calendar = Calendar()
        # Reservation ids are unique across instances: a random prefix and a counter.
        self._ids = map(f"{secrets.token_hex(5)}.{{}}".format, itertools.count())
        self._rooms = SpareRooms()
        self._peers = peers or Peers(1, 0)  # the processes that share the limits
        self.stats = stats

    def admit(self, principal: Principal, estimated_tokens: int) -> Admission:
        """Start admitting a request (see `Admission` for the steps)."""
        plan = self._plans.get(principal)
        if not plan.scopes:
            return Admission(Reservation("", 0, plan, self._calendar.current(), None, []))
        room = self._rooms.get(plan.script_args)
        if self._early_dispatch and room.allows_early(time.monotonic(), self._peers.count):
            room.unanswered += 1
            self.stats.early()
            return Admission(
                reserve=partial(self._reserve_early, principal, estimated_tokens, room), early=True
            )
        return Admission(reserve=partial(self.reserve, principal, estimated_tokens))

    async def reserve(self, principal: Principal, estimated_tokens: int) -> Reservation:
        plan = self._plans.get(principal)
        period = self._calendar.current()
        if not plan.scopes:
            return Reservation("", 0, plan, period, None, [])
        tokens = min(max(0, estimated_tokens), MAX_TOKENS)
        try:
            reservation = await self._backend.acquire(plan, next(self._ids), tokens, period)
        except LimitExceeded as exceeded:
            self._rooms.get(plan.script_args).room = 0  # at a limit: wait for Redis again
            self.stats.refusal(exceeded.kind.field_name, principal.tenant.name)
            raise limit_error(exceeded, period) from None
        self._rooms.get(plan.script_args).update(reservation)
        return reservation

    async def _reserve_early(
        self, principal: Principal, estimated_tokens: int, room: SpareRoom
    ) -> Reservation:
        try:
            return await self.reserve(principal, estimated_tokens)
        except GatewayError:
            self.stats.early_refusal()
            raise
        finally:
            room.unanswered -= 1

    def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reservation's estimate by `used_tokens` and free its concurrency slots;
        safe to call more than once (only the first counts)."""
        reservation.settle(used_tokens)

    async def start(self) -> None:
        await self._backend.start()

    async def close(self) -> None:
        """Stop background work; with Redis, send the settlements still queued."""
        await self._backend.close()


def open_limiter(
    limits: LimitsSettings, store: StoreSettings, peers: Peers | None = None
) -> Limiter:
    """Redis (shared by every instance) when the store has a Redis URL, else in-process."""
    defaults = Limits(**limits.defaults.model_dump())
    stats = LimiterStats()
    backend: Backend
    if store.redis_url:
        shared = RedisLimiter(
            store.redis_url,
            store.redis_prefix,
            limits.redis_timeout_s,
            limits.lease_ttl_s,
            limits.redis_retry_interval_s,
            stats,
        )
        fallback = LocalLimiter(limits.lease_ttl_s) if limits.failure_policy == "open" else None
        backend = FailoverLimiter(shared, fallback, limits.redis_retry_interval_s, stats)
    else:
        backend = LocalLimiter(limits.lease_ttl_s)
    return Limiter(backend, defaults, stats, limits.early_dispatch, peers)
