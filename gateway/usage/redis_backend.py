"""The ledger in Redis, beside the key store, for several gateway instances.

Layout under the store's prefix (default "vgw:"):

- ``usage-records:{day}:{tenant}``: a hash of the tenant's records of the day, record id ->
  the record as JSON. Its HSETNX is what makes a record count once.
- ``usage:{day}:["tenant","key","model"]``: a hash of the counters (HINCRBY), one per row.
- ``usage-days``: sorted set of the days that have rows, scored by ordinal, for date ranges.
- ``usage-tenants:{day}`` and ``usage-entries:{day}:{tenant}``: sets naming the day's tenants
  and each tenant's ``["key","model"]`` pairs, so a query reads the rows it returns without
  SCAN, and a tenant's query reads only that tenant's.

A write is one pipeline of EVALs, one per BATCH_RECORDS records (so no script blocks Redis for
long): each script stores the records that are not there yet (HSETNX) and adds those, and only
those, to their rows and indexes, atomically. A write sent again after a lost reply, or a
record replayed from a log, is therefore not counted twice. Nothing expires (yet).

The script writes keys named in its JSON argument rather than declared in KEYS. On a Redis
Cluster every key carries the hash tag ``{usage}`` after the prefix (``vgw:{usage}:usage-days``
...), so they all live in one slot, the script's declared key routes it there, and the keys
it names are in that slot too; a ledger writes a batch per flush, so one slot takes the load.
On one server and under Sentinel the layout is as it always was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, cast

import orjson

from gateway.redis_client import keyspace, parse_redis_url, redis_client
from gateway.store_health import StoreHealth, guarded
from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.counts import COUNTER_FIELDS, UsageCounts, UsageKey
from gateway.usage.records import UsageRecord

READ_PIPELINE_COMMANDS = 1000
# Records per script: at most about 4 ms inside Redis (each record a row of its own; far less
# with the few rows of real traffic), short enough not to stall the limiter's calls.
BATCH_RECORDS = 200
# A day's records hash expires this long after its last write (`usage.record_retention_days`
# by default): Redis memory stays bounded (about 300 bytes a request); the daily rows, which
# the usage API reads, are kept.
RECORD_RETENTION_S = 35 * 86400

STORE_RECORDS = """
-- KEYS[1]: the days index
-- ARGV[1]: JSON, {counters: [name], retention_s: seconds,
--   rows: [[records hash, counters hash, entries set, entry, tenants set, tenant, day, ordinal]],
--   records: [[row number, counter values...]]}
-- ARGV[2 + 2i], ARGV[3 + 2i]: record i's id and JSON (apart: not parsed here)
local batch = cjson.decode(ARGV[1])
local counters = #batch.counters
local added = {}
for i, record in ipairs(batch.records) do
  local row = record[1]
  if redis.call('HSETNX', batch.rows[row][1], ARGV[2 * i], ARGV[2 * i + 1]) == 1 then
    local sums = added[row]
    if not sums then
      sums = {}
      for c = 1, counters do sums[c] = 0 end
      added[row] = sums
    end
    for c = 1, counters do sums[c] = sums[c] + record[1 + c] end
  end
end
for row, sums in pairs(added) do
  local names = batch.rows[row]
  redis.call('EXPIRE', names[1], batch.retention_s)
  redis.call('ZADD', KEYS[1], names[8], names[7])
  redis.call('SADD', names[5], names[6])
  redis.call('SADD', names[3], names[4])
  for c, name in ipairs(batch.counters) do
    if sums[c] ~= 0 then
      redis.call('HINCRBY', names[2], name, sums[c])
    end
  end
end
return 1
"""


@guarded
class RedisUsageBackend:
    def __init__(
        self,
        url: str,
        prefix: str = "vgw:",
        timeout_s: float = 0.5,
        budget_s: float = 1.0,
        record_retention_s: float = RECORD_RETENTION_S,
    ) -> None:
        self.health = StoreHealth("usage", budget_s)
        self._record_retention_s = int(record_retention_s)
        self._prefix = keyspace(parse_redis_url(url), prefix, "usage")
        # Retries are safe for writes too: records are stored once.
        self._redis = redis_client(url, timeout_s, decode_responses=True)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _row_key(self, key: UsageKey) -> str:
        return self._key("usage", key.day, _json([key.tenant_id, key.key_id, key.model]))

    async def write(self, records: list[UsageRecord]) -> None:
        days_key = self._key("usage-days")
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(records), BATCH_RECORDS):
                batch = records[start : start + BATCH_RECORDS]
                pipe.eval(STORE_RECORDS, 1, days_key, *self._arguments(batch))
            await pipe.execute()

    def _arguments(self, records: Sequence[UsageRecord]) -> list[bytes | str]:
        """The script's arguments: the rows and counts as one JSON, then each record's id and
        JSON (which the script stores as they are)."""
        row_numbers: dict[UsageKey, int] = {}
        rows: list[list[Any]] = []
        counts = []
        stored: list[bytes | str] = []
        for record in records:
            key = record.usage_key()
            row = row_numbers.get(key)
            if row is None:
                row = row_numbers[key] = len(rows) + 1  # Lua counts from 1
                rows.append(
                    [
                        self._key("usage-records", key.day, key.tenant_id),
                        self._row_key(key),
                        self._key("usage-entries", key.day, key.tenant_id),
                        _json([key.key_id, key.model]),
                        self._key("usage-tenants", key.day),
                        key.tenant_id,
                        key.day,
                        date.fromisoformat(key.day).toordinal(),
                    ]
                )
            counts.append([row, *record.counts().values()])
            stored += (record.record_id, record.to_json())
        batch = {
            "counters": COUNTER_FIELDS,
            "retention_s": self._record_retention_s,
            "rows": rows,
            "records": counts,
        }
        return [orjson.dumps(batch), *stored]

    async def read(self, usage_filter: UsageFilter) -> list[tuple[UsageKey, UsageCounts]]:
        days = await self._days(usage_filter.first_day, usage_filter.last_day)
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

    async def read_records(self, record_filter: RecordFilter) -> list[UsageRecord]:
        days = await self._days(record_filter.first_day, record_filter.last_day)
        tenant = record_filter.tenant_id
        hashes = await self._pipelined(
            "hvals", [self._key("usage-records", day, tenant) for day in days]
        )
        return [UsageRecord.from_json(value) for values in hashes for value in values]

    async def _days(self, first: str | None, last: str | None) -> list[str]:
        """The days that have rows, from `first` to `last` (both inclusive, None: open)."""
        return cast(  # the client decodes its replies (redis-py types them `bytes | str`)
            list[str],
            await self._redis.zrangebyscore(
                self._key("usage-days"),
                date.fromisoformat(first).toordinal() if first else "-inf",
                date.fromisoformat(last).toordinal() if last else "+inf",
            ),
        )

    async def _pipelined(self, command: str, keys: Sequence[str]) -> list[Any]:
        """`command` on each key, READ_PIPELINE_COMMANDS per round trip."""
        results: list[Any] = []
        for start in range(0, len(keys), READ_PIPELINE_COMMANDS):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + READ_PIPELINE_COMMANDS]:
                    getattr(pipe, command)(key)
                results += await pipe.execute()
        return results

    async def prune_records(self, before_day: str, limit: int) -> int:
        return 0  # a day's records hash expires by itself

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _json(parts: list[str]) -> str:
    """Ids and model names joined without a separator they could contain."""
    return orjson.dumps(parts).decode()
