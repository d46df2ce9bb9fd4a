"""The adapter registry in Redis: one hash, ``{prefix}lora-adapters``, name -> JSON document.

One hash keeps every write a single atomic command (HSETNX to create, HDEL to delete) but
the update, which must not create: a short Lua script checks and sets in one step. One key,
so it works alike on one server, under Sentinel and on a Cluster (in whichever slot it
hashes to). Calls have the stores' client policy (`gateway.redis_client`).
"""

from __future__ import annotations

import orjson

from gateway.adapters.models import AdapterRecord, adapter_from_dict, adapter_to_dict
from gateway.redis_client import redis_client
from gateway.store_health import StoreHealth, guarded
from gateway.tenancy.store import Conflict, NotFound

UPDATE_EXISTING = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@guarded
class RedisAdapterRegistry:
    def __init__(
        self, url: str, prefix: str = "vgw:", timeout_s: float = 0.5, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("adapters", budget_s)
        self._key = f"{prefix}lora-adapters"
        self._redis = redis_client(url, timeout_s)
        self._update = self._redis.register_script(UPDATE_EXISTING)

    async def create(self, record: AdapterRecord) -> None:
        if not await self._redis.hsetnx(self._key, record.name, _dump(record)):
            raise Conflict(f"an adapter named {record.name!r} exists")

    async def get(self, name: str) -> AdapterRecord | None:
        document = await self._redis.hget(self._key, name)
        return None if document is None else adapter_from_dict(orjson.loads(document))

    async def list(self) -> list[AdapterRecord]:
        documents = await self._redis.hvals(self._key)
        records = [adapter_from_dict(orjson.loads(document)) for document in documents]
        return sorted(records, key=lambda record: record.name)

    async def update(self, record: AdapterRecord) -> None:
        if not await self._update(keys=[self._key], args=[record.name, _dump(record)]):
            raise NotFound(f"no adapter {record.name!r}")

    async def delete(self, name: str) -> None:
        if not await self._redis.hdel(self._key, name):
            raise NotFound(f"no adapter {name!r}")

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _dump(record: AdapterRecord) -> bytes:
    return orjson.dumps(adapter_to_dict(record))
