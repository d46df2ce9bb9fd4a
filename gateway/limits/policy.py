"""What happens when Redis is in trouble: fail open onto the local limiter, or fail closed.

No request waits for Redis longer than the configured timeout. After a failure, requests skip
Redis for `retry_interval_s` (they would most likely wait the timeout and fail again) and then
the next request tries it again, so recovery needs nobody. Fail-open keeps serving with each
instance enforcing the full limits on its own (so N instances may admit up to N times a
limit until Redis is back); fail-closed answers 503 instead, which keeps limits exact at the
cost of availability. Either way the event is counted (`LimiterStats` and the Prometheus
counters vllm_gateway_redis_errors / vllm_gateway_redis_fail_open) and logged at most once per
interval.
"""

from __future__ import annotations

import time

from gateway.limits.headers import limiter_unavailable
from gateway.limits.local_limiter import LocalLimiter
from gateway.limits.periods import Period
from gateway.limits.plan import Plan
from gateway.limits.redis_limiter import RedisLimiter
from gateway.limits.reservation import Reservation, SharedLimiterUnavailable
from gateway.limits.stats import LimiterStats, ThrottledWarning

_LOG_INTERVAL_S = 10.0


class FailoverLimiter:
    """Redis first; on trouble, the local limiter (fail-open) or a 503 (fail-closed)."""

    def __init__(
        self,
        shared: RedisLimiter,
        fallback: LocalLimiter | None,
        retry_interval_s: float,
        stats: LimiterStats,
    ) -> None:
        self._shared = shared
        self._fallback = fallback
        self._retry_interval_s = retry_interval_s
        self._stats = stats
        self._skip_shared_until = 0.0
        self._warning = ThrottledWarning(_LOG_INTERVAL_S)

    async def acquire(
        self, plan: Plan, reservation_id: str, tokens: int, period: Period
    ) -> Reservation:
        if time.monotonic() >= self._skip_shared_until:
            try:
                return await self._shared.acquire(plan, reservation_id, tokens, period)
            except SharedLimiterUnavailable as error:
                self._skip_shared_until = time.monotonic() + self._retry_interval_s
                self._stats.reservation_failed()
                self._warning.warn(
                    "rate limiter: Redis failed (%s); failing %s",
                    error,
                    "open" if self._fallback else "closed",
                )
        if self._fallback is None:
            self._stats.answered_unavailable()
            raise limiter_unavailable()
        self._stats.fell_back()
        return await self._fallback.acquire(plan, reservation_id, tokens, period)

    async def start(self) -> None:
        await self._shared.start()
        if self._fallback is not None:
            await self._fallback.start()

    async def close(self) -> None:
        await self._shared.close()
        if self._fallback is not None:
            await self._fallback.close()
