"""Pick the ledger's store as the key store is picked: Redis when configured, else SQLite."""

from __future__ import annotations

from gateway.settings import Settings
from gateway.usage.backend import UsageBackend
from gateway.usage.ledger import UsageLedger
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend


def open_ledger(settings: Settings) -> UsageLedger:
    """Synchronous, for use while the app is built; Redis connects on the first flush."""
    store = settings.store
    backend: UsageBackend
    if store.redis_url:
        backend = RedisUsageBackend(
            store.redis_url, store.redis_prefix, store.redis_timeout_s, store.call_budget_s
        )
    else:
        backend = SqliteUsageBackend(store.sqlite_path, budget_s=store.call_budget_s)
    return UsageLedger(backend, settings.usage.flush_interval_s, settings.usage.max_pending_entries)
