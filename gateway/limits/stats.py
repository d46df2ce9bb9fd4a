"""Counters of the limiter's trouble with Redis, for the metrics endpoint and the log."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

logger = logging.getLogger("gateway.limits")


@dataclass(slots=True)
class LimiterStats:
    """Monotonic counters; a metrics exporter reads them as Prometheus counters."""

    redis_failures: int = 0  # reservations Redis did not answer in time or failed
    local_fallbacks: int = 0  # requests the local limiter decided on because of that (open)
    unavailable: int = 0  # requests answered 503 because of that (closed)
    settle_failures: int = 0  # settlement batches that failed and were retried
    settlements_dropped: int = 0  # settlements given up on (their leases expire by TTL)


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
