"""What a ledger store does: apply batches of counts exactly once, and read counts back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.store_health import StoreHealth
from gateway.usage.counts import UsageCounts, UsageKey


@dataclass(frozen=True, slots=True)
class Batch:
    """Counts to add, numbered per writer so that a retried batch is applied only once.

    A write whose answer is lost (a timeout, a dropped connection) may or may not have been
    applied. The store keeps, per writer, the highest sequence number it applied, in the same
    atomic step as the counts, and skips batches at or below it: retrying is always safe.
    """

    writer_id: str
    sequence: int
    counts: dict[UsageKey, UsageCounts]


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which rows to read; None matches everything. Days are YYYY-MM-DD, both inclusive."""

    tenant_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    first_day: str | None = None
    last_day: str | None = None

    def matches(self, key: UsageKey) -> bool:
        return (
            (self.tenant_id is None or key.tenant_id == self.tenant_id)
            and (self.key_id is None or key.key_id == self.key_id)
            and (self.model is None or key.model == self.model)
            and (self.first_day is None or key.day >= self.first_day)
            and (self.last_day is None or key.day <= self.last_day)
        )


class UsageBackend(Protocol):
    health: StoreHealth

    async def write(self, batches: list[Batch]) -> None:
        """Apply `batches` in order, in one round trip or transaction; raise on failure."""
        ...

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        """The stored rows that match; StoreUnavailable when the store cannot answer."""
        ...

    async def ping(self) -> None:
        """One cheap round trip: whether the store answers (readiness probes)."""

    async def close(self) -> None: ...
