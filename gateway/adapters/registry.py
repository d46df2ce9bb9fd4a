"""The adapter registry's interface, and the store the settings choose for it.

It lives in the same kind of store as the tenants (Redis when configured, else the SQLite
file), through a client and a table of its own, so every gateway instance sees the adapters
every other one may load. Errors are the tenancy store's (`NotFound`, `Conflict`), which the
admin API already maps to 404 and 409.
"""

from __future__ import annotations

from typing import Protocol

from gateway.adapters.models import AdapterRecord
from gateway.adapters.redis_registry import RedisAdapterRegistry
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.settings import StoreSettings
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


def open_registry(settings: StoreSettings) -> AdapterRegistry:
    """Synchronous like `open_store`, so the app can build it before the event loop runs."""
    if settings.redis_url:
        return RedisAdapterRegistry(
            settings.redis_url,
            settings.redis_prefix,
            settings.redis_timeout_s,
            settings.call_budget_s,
        )
    return SqliteAdapterRegistry(settings.sqlite_path, budget_s=settings.call_budget_s)
