"""The router's in-memory copy of the adapter registry.

Routing reads it on every request, so it is a dict, refreshed in the background. A name not
in the copy may have been registered since the last refresh: `lookup` asks the store once
and remembers a miss for a moment, so that requests for an adapter vLLM was started with
(`--lora-modules`, never registered) do not each cost a store read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.adapters.models import AdapterRecord
from gateway.adapters.registry import AdapterRegistry
from gateway.core.errors import StoreUnavailable

logger = logging.getLogger(__name__)

MISS_TTL_S = 1.0

OnDeleted = Callable[[AdapterRecord], Awaitable[None]]


class AdapterCatalog:
    def __init__(self, registry: AdapterRegistry | None) -> None:
        self.records: dict[str, AdapterRecord] = {}
        self._registry = registry
        self._misses: dict[str, float] = {}

    def is_registered(self, name: str) -> bool:
        return name in self.records

    async def refresh(self) -> list[AdapterRecord]:
        """Read the registry again; returns the records deleted since the last read."""
        if self._registry is None:
            return []
        previous = self.records
        self.records = {record.name: record for record in await self._registry.list()}
        self._misses.clear()
        return [record for name, record in previous.items() if name not in self.records]

    async def lookup(self, name: str) -> AdapterRecord | None:
        """The record of `name`, from the copy, else from the store (a miss is remembered;
        a store that fails counts as a miss, so requests go on as for an unregistered adapter)."""
        record = self.records.get(name)
        if record is not None or self._registry is None:
            return record
        if time.monotonic() < self._misses.get(name, 0.0):
            return None
        try:
            record = await self._registry.get(name)
        except StoreUnavailable:  # serve as if unregistered; the store's health logs it once
            record = None
        if record is None:
            self._misses[name] = time.monotonic() + MISS_TTL_S
        else:
            self.records = {**self.records, name: record}
        return record

    async def refresh_forever(self, interval_s: float, on_deleted: OnDeleted) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                deleted = await self.refresh()
            except StoreUnavailable:  # keep the last good copy; the store's health logs it once
                continue
            for record in deleted:
                try:
                    await on_deleted(record)
                except Exception:
                    logger.exception("retiring deregistered adapter %s failed", record.name)
