"""What key authentication costs a request on a cache hit (target: <= 30 us median).

Measures `KeyAuthenticator.authenticate` in-process with a real SQLite store behind it: the
first call misses and loads the key; every timed call after it is the common path, one HMAC
and one dict lookup plus the validity checks. Run: `.venv/bin/python -m bench.auth`.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from gateway.tenancy.auth import KeyAuthenticator
from gateway.tenancy.models import ApiKey, ModelRoute, Tenant
from gateway.tenancy.secrets import KeyHasher, new_id, new_secret, shown_prefix
from gateway.tenancy.sqlite_store import SqliteStore

ROUNDS = 20
CALLS_PER_ROUND = 5_000


async def measure() -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "bench.db")
        hasher = KeyHasher(b"bench-server-secret-0123456789")
        tenant = Tenant(new_id("tenant"), "bench", {"base": ModelRoute("base")})
        await store.create_tenant(tenant)
        secret = new_secret()
        key = ApiKey(new_id("key"), tenant.id, "bench", shown_prefix(secret), hasher.hash(secret))
        await store.create_key(key)
        authenticator = KeyAuthenticator(store, hasher, cache_ttl_s=3600)
        await authenticator.authenticate(secret)  # the one miss: loads into the cache
        per_call_us = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                await authenticator.authenticate(secret)
            per_call_us.append((time.perf_counter() - started) / CALLS_PER_ROUND * 1e6)
        await store.close()
    return per_call_us


def main() -> None:
    per_call_us = asyncio.run(measure())
    print(
        f"key authentication on a cache hit: median {statistics.median(per_call_us):.1f} us, "
        f"best round {min(per_call_us):.1f} us, worst round {max(per_call_us):.1f} us "
        f"({ROUNDS} rounds x {CALLS_PER_ROUND} calls)"
    )


if __name__ == "__main__":
    main()
