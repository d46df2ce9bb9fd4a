"""The ledger in Redis, beside the key store, for several gateway instances.

Layout under the store's prefix (default "vgw:"):

- ``usage:{day}:["tenant","key","model"]``: a hash of the counters (HINCRBY), one per row.
- ``usage-days``: sorted set of the days that have rows, scored by ordinal, for date ranges.
- ``usage-tenants:{day}`` and ``usage-entries:{day}:{tenant}``: sets naming the day's tenants
  and each tenant's ``["key","model"]`` pairs, so a query reads the rows it returns without
  SCAN, and a tenant's query reads only that tenant's.
- ``usage-applied:{writer}``: the highest batch sequence applied for one ledger instance.

A flush is one pipeline of EVALs, one per batch (batches are cut small, so no script blocks
Redis for long): each script checks the writer's applied sequence, adds the counts, updates
the indexes and moves the sequence, atomically. A retried batch is therefore skipped if its
first attempt was applied, so a lost reply never counts twice. Rows never expire.

The script writes keys named in its JSON argument rather than declared in KEYS, which a
single Redis allows and Redis Cluster would not: as for the key store, Cluster is not
supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, cast

import orjson

from gateway.redis_client import redis_client
from gateway.store_health import StoreHealth, guarded
from gateway.usage.backend import Batch, UsageFilter
from gateway.usage.counts import COUNTER_FIELDS, UsageCounts, UsageKey

# Long enough for any retry of a batch to come back, short enough that the per-instance
# markers of restarted processes do not pile up.
APPLIED_TTL_S = 7 * 86400
READ_PIPELINE_COMMANDS = 1000

APPLY_BATCH = """
-- KEYS[1]: the writer's applied sequence; KEYS[2]: the days index
-- ARGV[1]: batch sequence; ARGV[2]: applied sequence TTL (s); ARGV[3]: the batch as JSON,
--   {counters: [name], days: [[day, ordinal]], tenants: [[tenants set, tenant]],
--    rows: [[counters hash, entries set, entry, counter values...]]}
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return 0
end
local batch = cjson.decode(ARGV[3])
for _, day in ipairs(batch.days) do
  redis.call('ZADD', KEYS[2], day[2], day[1])
end
for _, tenant in ipairs(batch.tenants) do
  redis.call('SADD', tenant[1], tenant[2])
end
for _, row in ipairs(batch.rows) do
  redis.call('SADD', row[2], row[3])
  for c, name in ipairs(batch.counters) do
    if row[3 + c] ~= 0 then
      redis.call('HINCRBY', row[1], name, row[3 + c])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


@guarded
class RedisUsageBackend:
    def __init__(
        self, url: str, prefix: str = "vgw:", timeout_s: float = 0.5, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("usage", budget_s)
        self._prefix = prefix
        # Retries are safe for writes too: batches are idempotent.
        self._redis = redis_client(url, timeout_s, decode_responses=True)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _row_key(self, key: UsageKey) -> str:
        return self._key("usage", key.day, _json([key.tenant_id, key.key_id, key.model]))

    async def write(self, batches: list[Batch]) -> None:
        days_key = self._key("usage-days")
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                applied_key = self._key("usage-applied", batch.writer_id)
                args = (batch.sequence, APPLIED_TTL_S, self._batch_json(batch))
                pipe.eval(APPLY_BATCH, 2, applied_key, days_key, *args)
            await pipe.execute()

    def _batch_json(self, batch: Batch) -> bytes:
        """The batch as one JSON argument: a few arguments for redis-py to pack instead of
        ten per row, which keeps a large flush from holding the event loop."""
        days: dict[str, int] = {}
        tenants: dict[tuple[str, str], list[str]] = {}
        rows = []
        for key, counts in batch.counts.items():
            if key.day not in days:
                days[key.day] = date.fromisoformat(key.day).toordinal()
            if (key.day, key.tenant_id) not in tenants:
                tenant_set = self._key("usage-tenants", key.day)
                tenants[key.day, key.tenant_id] = [tenant_set, key.tenant_id]
            entries_set = self._key("usage-entries", key.day, key.tenant_id)
            entry = _json([key.key_id, key.model])
            rows.append([self._row_key(key), entries_set, entry, *counts.values()])
        return orjson.dumps(
            {
                "counters": COUNTER_FIELDS,
                "days": list(days.items()),
                "tenants": list(tenants.values()),
                "rows": rows,
            }
        )

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        first, last = usage_filter.first_day, usage_filter.last_day
        days = cast(  # the client decodes its replies (redis-py types them `bytes | str`)
            list[str],
            await self._redis.zrangebyscore(
                self._key("usage-days"),
                date.fromisoformat(first).toordinal() if first else "-inf",
                date.fromisoformat(last).toordinal() if last else "+inf",
            ),
        )
        if usage_filter.tenant_id is not None:
            day_tenants = [(day, usage_filter.tenant_id) for day in days]
        else:
            tenant_sets = await self._pipelined(
                "smembers", [self._key("usage-tenants", day) for day in days]
            )
            day_tenants = [
                (day, tenant)
                for day, tenants in zip(days, tenant_sets, strict=True)
                for tenant in tenants
            ]
        entry_sets = await self._pipelined(
            "smembers", [self._key("usage-entries", day, tenant) for day, tenant in day_tenants]
        )
        keys = [
            UsageKey(day, tenant, *orjson.loads(entry))
            for (day, tenant), entries in zip(day_tenants, entry_sets, strict=True)
            for entry in entries
        ]
        keys = [key for key in keys if usage_filter.matches(key)]
        hashes = await self._pipelined("hgetall", [self._row_key(key) for key in keys])
        return [
            (key, UsageCounts(**{name: int(value) for name, value in counters.items()}))
            for key, counters in zip(keys, hashes, strict=True)
        ]

    async def _pipelined(self, command: str, keys: Sequence[str]) -> list[Any]:
        """`command` on each key, READ_PIPELINE_COMMANDS per round trip."""
        results: list[Any] = []
        for start in range(0, len(keys), READ_PIPELINE_COMMANDS):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + READ_PIPELINE_COMMANDS]:
                    getattr(pipe, command)(key)
                results += await pipe.execute()
        return results

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _json(parts: list[str]) -> str:
    """Ids and model names joined without a separator they could contain."""
    return orjson.dumps(parts).decode()
