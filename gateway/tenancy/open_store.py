"""Pick the store from the settings: Redis when a URL is configured, else the SQLite file."""

from __future__ import annotations

from pathlib import Path

from gateway.tenancy.redis_store import RedisStore
from gateway.tenancy.sqlite_store import SqliteStore
from gateway.tenancy.store import Store


def open_store(
    redis_url: str | None,
    sqlite_path: Path,
    prefix: str = "vgw:",
    timeout_s: float = 0.5,
    budget_s: float = 1.0,
) -> Store:
    """Synchronous, so it can run while the app is built, before any event loop exists.

    Neither store talks to its backend here beyond opening the SQLite file: Redis connects on
    the first call. `prefix` and `timeout_s` concern Redis only.
    """
    if redis_url:
        return RedisStore(redis_url, prefix, timeout_s, budget_s)
    return SqliteStore(sqlite_path, budget_s=budget_s)
