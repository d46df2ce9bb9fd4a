"""The shared limiter's token budgets in Redis, read back (reconciliation with the ledger).

Where they are (redis_scripts.py has the algorithm): per scope (``t:<tenant id>`` or
``k:<key id>``) the hash ``<keyspace><scope id>:h``, whose fields ``d:<yyyymmdd>`` and
``m:<yyyymm>`` hold the tokens the scope was charged that UTC day and month; the keyspace is
``<store prefix>rl:``, with the tenant's hash tag on a Redis Cluster (`keyspace`). A scope
has these fields only while it has a daily or monthly token budget, and RESERVE charges both
with the request's estimate while a settlement corrects only those of the budgets set: a scope
without a daily budget keeps estimates in its day fields (and likewise for months), so only
the fields of a budget in force count what the requests used.

The hash expires `KEPT_AFTER_MONTH_S` after the end of the month of its last charge: until
then every field of that month is there (a missing one: nothing was charged).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.redis_client import keyspace, parse_redis_url, redis_client

KEYSPACE = "rl:"  # the limiter's keys, under the store's prefix
KEPT_AFTER_MONTH_S = 86400  # budget counters outlive their month by a day, for inspection


def day_field(day: str) -> str:
    """The field of a UTC day, YYYY-MM-DD (the ledger's form)."""
    return "d:" + day.replace("-", "")


def month_field(month: str) -> str:
    """The field of a UTC month, YYYY-MM."""
    return "m:" + month.replace("-", "")


class BudgetCounters:
    """Reads the budget fields of many scopes, a pipeline of HMGETs per call."""

    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        self._address = parse_redis_url(url)
        self._prefix = prefix + KEYSPACE
        self._redis = redis_client(url, timeout_s, decode_responses=True)

    def hash_key(self, tenant_id: str, scope_id: str) -> str:
        """The Redis key of the scope's hash (`tenant_id`: whose hash tag on a Cluster)."""
        return f"{keyspace(self._address, self._prefix, tenant_id)}{scope_id}:h"

    async def read(
        self, scopes: Sequence[tuple[str, str]], fields: Sequence[str]
    ) -> list[dict[str, int]]:
        """`fields` of each (tenant id, scope id) in `scopes`, in that order: field -> tokens
        charged, for the fields present."""
        if not scopes or not fields:
            return [{} for _ in scopes]
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant_id, scope_id in scopes:
                pipe.hmget(self.hash_key(tenant_id, scope_id), list(fields))
            replies = await pipe.execute()
        return [
            {name: int(value) for name, value in zip(fields, values, strict=True) if value}
            for values in replies
        ]

    async def close(self) -> None:
        await self._redis.aclose()
