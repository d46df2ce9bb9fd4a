"""Stored responses in Redis: a string per response, ``{prefix}response:{tenant}:{id}`` (its
JSON document), and a list per background response, ``{prefix}response-events:{tenant}:{id}``
(its stream's events, a batch per element). Both expire with the response (SET PX, PEXPIREAT),
so Redis prunes them itself.

Every command touches one key, so the layout works alike on one server, under Sentinel and on a
Cluster; the conditional write is a short script on the response's own key.
"""

from __future__ import annotations

import time

from gateway.redis_client import redis_client
from gateway.responses.store import StoredResponse
from gateway.store_health import StoreHealth, guarded

# KEYS: the response; ARGV: document, expiry (Unix ms). Only a queued or in-progress response
# is replaced: a cancellation and a finished answer never overwrite each other.
PUT_IF_RUNNING = """
local stored = redis.call('GET', KEYS[1])
if not stored then
  return 0
end
local status = cjson.decode(stored)['response']['status']
if status ~= 'queued' and status ~= 'in_progress' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
"""


@guarded
class RedisResponseStore:
    def __init__(
        self, url: str, prefix: str = "vgw:", timeout_s: float = 0.5, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("responses", budget_s)
        self._prefix = prefix
        self._redis = redis_client(url, timeout_s)
        self._put_if_running = self._redis.register_script(PUT_IF_RUNNING)

    def _key(self, tenant_id: str, response_id: str) -> str:
        return f"{self._prefix}response:{tenant_id}:{response_id}"

    def _events_key(self, tenant_id: str, response_id: str) -> str:
        return f"{self._prefix}response-events:{tenant_id}:{response_id}"

    async def put(self, record: StoredResponse) -> None:
        key = self._key(record.tenant_id, record.id)
        await self._redis.set(key, record.dump(), pxat=_unix_ms(record.expires_at))

    async def put_if_running(self, record: StoredResponse) -> bool:
        key = self._key(record.tenant_id, record.id)
        return bool(
            await self._put_if_running(
                keys=[key], args=[record.dump(), _unix_ms(record.expires_at)]
            )
        )

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        document = await self._redis.get(self._key(tenant_id, response_id))
        if document is None:
            return None
        record = StoredResponse.load(tenant_id, document)
        return record if record.expires_at > time.time() else None

    async def delete(self, tenant_id: str, response_id: str) -> bool:
        deleted = await self._redis.delete(self._key(tenant_id, response_id))
        await self._redis.delete(self._events_key(tenant_id, response_id))
        return bool(deleted)

    async def append_events(self, record: StoredResponse, events: bytes) -> None:
        key = self._events_key(record.tenant_id, record.id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, events)
            pipe.pexpireat(key, _unix_ms(record.expires_at))
            await pipe.execute()

    async def events(self, tenant_id: str, response_id: str) -> bytes:
        key = self._events_key(tenant_id, response_id)
        batches: list[bytes] = await self._redis.lrange(key, 0, -1)  # type: ignore[assignment]
        return b"".join(batches)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def _unix_ms(seconds: float) -> int:
    return int(seconds * 1000)
