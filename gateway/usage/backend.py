"""What a ledger store does: keep each request's record once, its daily rows beside, and read
them back.

A store (SQLite, Redis; a relational database fits the same contract) holds the records keyed
by `record_id` and the daily rows per (day, tenant, key, model). `write` adds a record and its
counts to its row in one atomic step, and only if the record is not there yet: a write whose
answer was lost (a timeout, a dropped connection) may or may not have been applied, and the
ledger writes it again; a log replayed after a crash holds records already stored. Either way
nothing is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.store_health import StoreHealth
from gateway.usage.counts import UsageCounts, UsageKey
from gateway.usage.records import UsageRecord


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


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """One tenant's records; days are YYYY-MM-DD, both inclusive, None: unbounded."""

    tenant_id: str
    first_day: str | None = None
    last_day: str | None = None


class UsageBackend(Protocol):
    health: StoreHealth

    async def write(self, records: list[UsageRecord]) -> None:
        """Store the records it does not hold yet, each with its counts added to its daily row
        in the same atomic step, in one round trip or transaction; raise on failure (some may
        have been stored: writing them all again is safe)."""
        ...

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        """The daily rows that match; StoreUnavailable when the store cannot answer."""
        ...

    async def read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        """The tenant's records in the days asked for, in no particular order."""
        ...

    async def prune_records(self, before_day: str, limit: int) -> int:
        """Delete up to `limit` records of days before `before_day` (YYYY-MM-DD), never the
        daily rows; how many went (0 where the store expires them by itself)."""
        ...

    async def ping(self) -> None:
        """One cheap round trip: whether the store answers (readiness probes)."""

    async def close(self) -> None: ...
