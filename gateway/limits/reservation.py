"""What a limiter hands out and what it raises, shared by the local and the Redis limiter."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from gateway.core.asgi import Headers
from gateway.limits.estimate import MAX_TOKENS
from gateway.limits.periods import Period
from gateway.limits.plan import Plan, ScopeLimits


class Kind(Enum):
    """A limit kind: its number in the Redis script's replies, its words in messages, and its
    Limits field."""

    REQUESTS = (1, "requests per minute", "requests_per_minute")
    TOKENS = (2, "tokens per minute", "tokens_per_minute")
    CONCURRENT = (3, "concurrent requests", "max_concurrent")
    TOKENS_PER_DAY = (4, "tokens per day", "tokens_per_day")
    TOKENS_PER_MONTH = (5, "tokens per month", "tokens_per_month")

    def __init__(self, number: int, words: str, field_name: str) -> None:
        self.number = number
        self.words = words
        self.field_name = field_name  # in Limits and the admin API

    @property
    def is_budget(self) -> bool:
        return self in (Kind.TOKENS_PER_DAY, Kind.TOKENS_PER_MONTH)


KIND_BY_NUMBER = {kind.number: kind for kind in Kind}
# When a concurrency slot frees is unknown: the client may come back after this.
CONCURRENCY_RETRY_S = 1.0
# Requests and tokens per minute are counted over a sliding window of this length.
WINDOW_S = 60.0


class Reservation:
    """Admission of one request: what it reserved, under which limits, and by which limiter.

    `headers` are the ``x-ratelimit-*`` response headers. The limiter keeps only a weak
    reference for renewing concurrency leases, so a reservation dropped without `settle`
    stops being renewed and its leases expire instead of leaking.
    """

    __slots__ = (
        "__weakref__",
        "admitted_at",
        "headers",
        "id",
        "owner",
        "period",
        "plan",
        "settled",
        "spare",
        "tokens",
    )

    def __init__(
        self,
        reservation_id: str,
        tokens: int,
        plan: Plan,
        period: Period,
        owner: Settler | None,
        headers: Headers,
        admitted_at: int = 0,
        spare: int | None = None,
    ) -> None:
        self.id = reservation_id
        self.tokens = tokens
        self.plan = plan
        self.period = period
        self.owner = owner
        self.headers = headers
        self.admitted_at = admitted_at  # on the Redis server's clock (us), for its settlement
        # How many more requests of this size the limits would admit right after this one
        # (the shared limiter's count, None from the local one): see gateway/limits/early.py.
        self.spare = spare
        self.settled = False

    def settle(self, used_tokens: int) -> None:
        """Replace the estimate by `used_tokens` and free the concurrency slots; safe to call
        more than once (only the first counts)."""
        if self.owner is None or self.settled:
            return
        self.settled = True
        self.owner.release(self, min(max(0, used_tokens), MAX_TOKENS))


class LimitExceeded(Exception):
    """A limit refused the request; `retry_after_s` is None when waiting cannot help."""

    def __init__(
        self,
        scope: ScopeLimits,
        kind: Kind,
        limit: int,
        used: int,
        requested: int,
        retry_after_s: float | None,
    ) -> None:
        super().__init__(f"{kind.words} on {scope.label}")
        self.scope = scope
        self.kind = kind
        self.limit = limit
        self.used = used
        self.requested = requested
        self.retry_after_s = retry_after_s


class SharedLimiterUnavailable(Exception):
    """Redis did not answer in time or failed; the failure policy decides what happens."""


class Settler(Protocol):
    """The limiter that made a reservation, and settles it."""

    def release(self, reservation: Reservation, used_tokens: int) -> None: ...


class Backend(Protocol):
    """A limiter as the facade uses it: admits requests under a plan, or raises."""

    async def acquire(
        self, plan: Plan, reservation_id: str, tokens: int, period: Period
    ) -> Reservation: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
