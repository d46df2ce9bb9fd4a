"""The adapter registry's interface.

It lives in the same kind of store as the tenants (`gateway.stores`: Redis when configured,
else the SQLite file), through a client and a table of its own, so every gateway instance sees
the adapters every other one may load. Errors are the tenancy store's (`NotFound`,
`Conflict`), which the admin API already maps to 404 and 409.
"""

from __future__ import annotations

from typing import Protocol

from gateway.adapters.models import AdapterRecord
from gateway.store_health import StoreHealth


class AdapterRegistry(Protocol):
    health: StoreHealth

    async def create(self, record: AdapterRecord) -> None:
        """Raises Conflict when the name is taken."""

    async def get(self, name: str) -> AdapterRecord | None: ...

    async def list(self) -> list[AdapterRecord]:
        """All records, by name."""

    async def update(self, record: AdapterRecord) -> None:
        """Replace the record of that name; raises NotFound."""

    async def delete(self, name: str) -> None:
        """Raises NotFound."""

    async def ping(self) -> None:
        """One cheap round trip: whether the store answers (readiness probes)."""

    async def close(self) -> None: ...
