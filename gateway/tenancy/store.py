"""The one small interface both stores implement: Redis (shared) and SQLite (embedded default).

Both keep records as JSON documents of the dataclasses in `models`, so a record round-trips
unchanged whichever store holds it; one test suite runs against both.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.store_health import StoreHealth
from gateway.tenancy.models import ApiKey, AuditEntry, Tenant


class StoreError(Exception):
    """Base of the store's own errors; the admin API maps each to a status."""


class NotFound(StoreError):
    """No record with that id (404)."""


class Conflict(StoreError):
    """A record with that unique name already exists (409)."""


InvalidationHandler = Callable[[], Awaitable[None] | None]

logger = logging.getLogger(__name__)


async def notify(handler: InvalidationHandler) -> None:
    """Call a sync or async invalidation handler, logging (not raising) its failure.

    A listener runs for the life of the process: one failing callback must not end it, or
    every later invalidation would be lost silently.
    """
    try:
        result = handler()
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("invalidation handler failed")


class Store(Protocol):
    health: StoreHealth

    async def create_tenant(self, tenant: Tenant) -> None:
        """Raises Conflict when the name (or id) is taken."""

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def list_tenants(self, offset: int = 0, limit: int | None = None) -> list[Tenant]:
        """Tenants ordered by creation time; all of them unless `limit`."""

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace the record; raises NotFound, or Conflict when renamed onto a taken name."""

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete the tenant; its keys are revoked (kept for the audit trail). Raises NotFound."""

    async def create_key(self, key: ApiKey) -> None:
        """Raises NotFound when the tenant does not exist."""

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def find_key_by_hash(self, secret_hash: str) -> ApiKey | None:
        """The key whose current or grace-period secret hashes to `secret_hash`."""

    async def list_keys(
        self, tenant_id: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[ApiKey]:
        """Keys ordered by creation time, optionally of one tenant."""

    async def update_key(self, key: ApiKey) -> None:
        """Replace the record and its hash index entries; raises NotFound."""

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        """Record last-used times in one batch (off the hot path); unknown ids are ignored."""

    async def append_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(
        self,
        target_id: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Newest first, skipping the newest `offset` entries that match."""

    async def publish_invalidation(self) -> None:
        """Tell every gateway instance sharing this store to drop its cached keys."""

    async def listen_invalidations(self, handler: InvalidationHandler) -> None:
        """Call `handler` on every invalidation until cancelled (SQLite: same process only)."""

    async def ping(self) -> None:
        """One cheap round trip: whether the store answers (readiness probes)."""

    async def close(self) -> None: ...


def audit_where(
    target_id: str | None, action: str | None, since: float | None, placeholder: str
) -> tuple[str, tuple[Any, ...]]:
    """The SQL stores' WHERE clause ("" for none) selecting audit entries, in their driver's
    placeholder style (`?` or `%s`), and its values."""
    filters = [("target_id", target_id), ("action", action), ("at", since)]
    given = [(column, value) for column, value in filters if value is not None]
    clauses = [f"{column} {'>=' if column == 'at' else '='} {placeholder}" for column, _ in given]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, tuple(value for _, value in given)
