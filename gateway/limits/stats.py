"""What the limiter counts: refusals, and its trouble with Redis.

Each event bumps a counter here (the limiter's own view, which tests read) and the matching
Prometheus metric of gateway.observability.metrics, so no caller has to remember both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gateway.observability import metrics

logger = logging.getLogger("gateway.limits")
_COMPONENT = "rate_limits"


@dataclass(slots=True)
class LimiterStats:
    refused: int = 0  # requests answered 429
    redis_failures: int = 0  # reservations Redis did not answer in time or failed
    local_fallbacks: int = 0  # requests the local limiter decided on because of that (open)
    unavailable: int = 0  # requests answered 503 because of that (closed)
    settle_failures: int = 0  # settlement batches that failed and were retried
    settlements_dropped: int = 0  # settlements given up on (their leases expire by TTL)
    early_sent: int = 0  # requests sent upstream before Redis answered (gateway/limits/early.py)
    early_refused: int = 0  # of those, refused by Redis (or by its failure policy)

    def refusal(self, limit: str, tenant: str) -> None:
        """`limit`: the Limits field that refused (requests_per_minute, ...)."""
        self.refused += 1
        metrics.rate_limit_rejected(limit, tenant)

    def early(self) -> None:
        self.early_sent += 1
        metrics.rate_limit_early(refused=False)

    def early_refusal(self) -> None:
        self.early_refused += 1
        metrics.rate_limit_early(refused=True)

    def reservation_failed(self) -> None:
        self.redis_failures += 1
        metrics.redis_error("rate_limit_reserve")

    def fell_back(self) -> None:
        self.local_fallbacks += 1
        metrics.redis_fail_open(_COMPONENT)

    def answered_unavailable(self) -> None:
        self.unavailable += 1

    def settlement_failed(self) -> None:
        self.settle_failures += 1
        metrics.redis_error("rate_limit_settle")

    def dropped(self, settlements: int) -> None:
        self.settlements_dropped += settlements

    def renewal_failed(self) -> None:
        metrics.redis_error("rate_limit_renew")


class ThrottledWarning:
    """Logs a recurring problem at most once per interval, with how often it happened."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        self._next_at = now + self._interval_s
        logger.warning(message + " (%d more like it since the last report)", *args, suppressed)
