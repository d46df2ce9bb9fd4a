"""Usage records older than `usage.record_retention_days` deleted: every hour, in batches of
`PRUNE_BATCH` records with requests let in between, so that no transaction holds the ledger's
table for long. The daily rows stay (usage reports read them); Redis expires records itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.core.errors import StoreUnavailable
from gateway.usage.backend import UsageBackend
from gateway.usage.records import utc_day

PRUNE_INTERVAL_S = 3600.0
FIRST_PRUNE_S = 60.0  # after the start, once the ledger has stored what a dead process left
PRUNE_BATCH = 1000
_SECONDS_PER_DAY = 86400


class RecordRetention:
    """A component: the background loop that prunes the ledger's old records."""

    def __init__(self, backend: UsageBackend, retention_days: int) -> None:
        self._backend = backend
        self._retention_days = retention_days

    def cutoff_day(self, now: float) -> str:
        """The first day whose records are kept."""
        return utc_day(int(now // _SECONDS_PER_DAY) - self._retention_days)

    async def prune(self, now: float) -> int:
        """Every record before the cutoff, batch by batch; how many went."""
        cutoff, pruned = self.cutoff_day(now), 0
        while (batch := await self._backend.prune_records(cutoff, PRUNE_BATCH)) > 0:
            pruned += batch
            if batch < PRUNE_BATCH:
                break
            await asyncio.sleep(0)
        return pruned

    async def run_background(self) -> None:
        await asyncio.sleep(FIRST_PRUNE_S)
        while True:
            with contextlib.suppress(StoreUnavailable):  # logged by the store; next hour
                await self.prune(time.time())
            await asyncio.sleep(PRUNE_INTERVAL_S)
