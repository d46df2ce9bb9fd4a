"""The shared store: tenants, keys and the audit log in Redis, for several gateway instances.

Layout under a configurable prefix (default "vgw:"), so deployments and tests can share one
Redis without seeing each other's records:

- ``tenant:{id}``: the tenant's JSON document; ``tenant-name:{name}`` → id keeps names unique.
- ``key:{id}``: a hash with ``doc`` (the key's JSON document) and ``last_used_at``. The time is
  a field of its own so `touch_keys` can move it forward without re-encoding the document
  (Lua's cjson would round floats to 14 digits and turn empty lists into objects).
- ``key-hash:{hash}`` → key id, one entry per hash in `ApiKey.secret_hashes()`.
- ``tenants``, ``keys`` and ``tenant-keys:{tenant id}``: sorted sets by created_at, for listing
  in creation order (ties by id).
- ``audit`` (hash id → document) with sorted sets by time: ``audit-by-time``,
  ``audit-target:{id}`` and ``audit-action:{action}``, so the filtered listings read only the
  entries they return.

Every write that checks before it changes (unique names, existing tenant, hash index) is one
Lua script, hence atomic between instances without retries; deleting a tenant rewrites its
keys' documents in Python under WATCH/MULTI instead, for the same reason `last_used_at` lives
apart. The scripts compute the keys of old index entries from the stored document.

On a Redis Cluster every one of these keys carries the hash tag ``{keys}`` after the prefix
(``vgw:{keys}:tenant:<id>`` ...), so they all live in one slot: each script and transaction
touches one slot, as Cluster requires, and the scripts may still name keys they read from a
document. The store is small and read through the authenticator's cache, so one shard serves
it; the limiter, which is on every request's path, spreads over the shards by tenant. On one
server and under Sentinel the layout is the one above, unchanged.

Invalidations go out on the channel ``invalidate`` under the same prefix: PUBLISH, or on a
Cluster sharded pub/sub (SPUBLISH, SSUBSCRIBE on the primary serving the channel's slot),
which stays within that slot's shard instead of crossing every node of the cluster bus.

Every call has a socket timeout, and transient states are retried within the store's budget
(`gateway.redis_client`, `gateway.store_health`), so a slow or unreachable Redis fails a
request quickly instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import orjson
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.redis_client import keyspace, parse_redis_url, pinned_client, redis_client
from gateway.store_health import StoreHealth, guarded
from gateway.tenancy.models import (
    ApiKey,
    AuditEntry,
    Tenant,
    audit_from_dict,
    key_from_dict,
    tenant_from_dict,
    to_dict,
)
from gateway.tenancy.store import Conflict, InvalidationHandler, NotFound, notify

logger = logging.getLogger(__name__)

# How long a listener waits for Redis to come back before subscribing again.
RECONNECT_DELAY_S = 0.5
# A subscribed connection is silent while nobody publishes; PING it this often when idle so a
# dead peer (no TCP reset) is noticed within two intervals instead of never.
LISTENER_PING_INTERVAL_S = 5.0

CREATE_TENANT = """
-- KEYS: tenant document, name index entry, tenants by creation
-- ARGV: document, id, created_at
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 'conflict'
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 'ok'
"""

UPDATE_TENANT = """
-- KEYS: tenant document, new name index entry, tenants by creation
-- ARGV: document, id, created_at, name index prefix
local previous = redis.call('GET', KEYS[1])
if not previous then
  return 'not_found'
end
local previous_name_key = ARGV[4] .. cjson.decode(previous)['name']
if previous_name_key ~= KEYS[2] then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return 'conflict'
  end
  redis.call('DEL', previous_name_key)
  redis.call('SET', KEYS[2], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 'ok'
"""

# Shared by the key scripts: last_used_at only moves forward, whoever writes it, so a late
# batch from one instance cannot undo a newer time recorded by another.
ADVANCE_LAST_USED = """
local function advance_last_used(record, at)
  local current = redis.call('HGET', record, 'last_used_at')
  if not current or tonumber(current) < tonumber(at) then
    redis.call('HSET', record, 'last_used_at', at)
  end
end
"""

CREATE_KEY = (
    ADVANCE_LAST_USED
    + """
-- KEYS: key record, tenant document, keys by creation, tenant's keys by creation,
--       then one hash index entry per secret hash
-- ARGV: document, id, created_at, last_used_at or ''
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 'not_found'
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'conflict'
end
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 'conflict'
  end
end
redis.call('HSET', KEYS[1], 'doc', ARGV[1])
if ARGV[4] ~= '' then
  advance_last_used(KEYS[1], ARGV[4])
end
for i = 5, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
return 'ok'
"""
)

UPDATE_KEY = (
    ADVANCE_LAST_USED
    + """
-- KEYS: key record, keys by creation, tenant's keys by creation,
--       then one hash index entry per secret hash
-- ARGV: document, id, created_at, last_used_at or '', hash index prefix, tenant keys prefix
local previous = redis.call('HGET', KEYS[1], 'doc')
if not previous then
  return 'not_found'
end
for i = 4, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[2] then
    return 'conflict'
  end
end
previous = cjson.decode(previous)
for _, field in ipairs({'secret_hash', 'grace_secret_hash'}) do
  if type(previous[field]) == 'string' then
    redis.call('DEL', ARGV[5] .. previous[field])
  end
end
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2])
end
redis.call('ZREM', ARGV[6] .. previous['tenant_id'], ARGV[2])
redis.call('HSET', KEYS[1], 'doc', ARGV[1])
if ARGV[4] ~= '' then
  advance_last_used(KEYS[1], ARGV[4])
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 'ok'
"""
)

TOUCH_KEYS = (
    ADVANCE_LAST_USED
    + """
-- KEYS: key records; ARGV: their last-used times, in the same order
for i, record in ipairs(KEYS) do
  if redis.call('EXISTS', record) == 1 then
    advance_last_used(record, ARGV[i])
  end
end
return 'ok'
"""
)

APPEND_AUDIT = """
-- KEYS: audit documents, then the sorted sets indexing the entry
-- ARGV: id, document, at
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 'conflict'
end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
end
return 'ok'
"""


@guarded
class RedisStore:
    """The `Store` on Redis (one server, Sentinel or Cluster), shared by every instance."""

    def __init__(
        self, url: str, prefix: str = "vgw:", timeout_s: float = 0.5, budget_s: float = 1.0
    ) -> None:
        self.health = StoreHealth("keys", budget_s)
        self._url = url
        self._prefix = prefix
        self._keyspace = keyspace(parse_redis_url(url), prefix, "keys")
        self._timeout_s = timeout_s
        # Decodes nothing: its replies are bytes, which redis-py types `bytes | str` (the casts).
        self._redis = redis_client(url, timeout_s)
        self._create_tenant = self._redis.register_script(CREATE_TENANT)
        self._update_tenant = self._redis.register_script(UPDATE_TENANT)
        self._create_key = self._redis.register_script(CREATE_KEY)
        self._update_key = self._redis.register_script(UPDATE_KEY)
        self._touch_keys = self._redis.register_script(TOUCH_KEYS)
        self._append_audit = self._redis.register_script(APPEND_AUDIT)

    @property
    def url(self) -> str:
        return self._url

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def listener_name(self) -> str:
        """The invalidation listener's connection name, as CLIENT LIST shows it."""
        return f"{self._prefix}invalidation-listener"

    def _key(self, *parts: str) -> str:
        return self._keyspace + ":".join(parts)

    async def create_tenant(self, tenant: Tenant) -> None:
        outcome = await self._create_tenant(
            keys=[
                self._key("tenant", tenant.id),
                self._key("tenant-name", tenant.name),
                self._key("tenants"),
            ],
            args=[_dump(tenant), tenant.id, tenant.created_at],
        )
        _raise_for(outcome, conflict=f"a tenant with id {tenant.id!r} or this name exists")

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        document = await self._redis.get(self._key("tenant", tenant_id))
        return None if document is None else tenant_from_dict(orjson.loads(document))

    async def list_tenants(self, offset: int = 0, limit: int | None = None) -> list[Tenant]:
        if limit is not None and limit <= 0:
            return []
        last = -1 if limit is None else offset + limit - 1
        tenant_ids = cast(list[bytes], await self._redis.zrange(self._key("tenants"), offset, last))
        if not tenant_ids:
            return []
        documents = await self._redis.mget([self._key("tenant", i.decode()) for i in tenant_ids])
        return [tenant_from_dict(orjson.loads(d)) for d in documents if d is not None]

    async def update_tenant(self, tenant: Tenant) -> None:
        outcome = await self._update_tenant(
            keys=[
                self._key("tenant", tenant.id),
                self._key("tenant-name", tenant.name),
                self._key("tenants"),
            ],
            args=[_dump(tenant), tenant.id, tenant.created_at, self._key("tenant-name", "")],
        )
        _raise_for(
            outcome,
            not_found=f"no tenant {tenant.id!r}",
            conflict=f"another tenant is named {tenant.name!r}",
        )

    async def delete_tenant(self, tenant_id: str) -> None:
        tenant_record = self._key("tenant", tenant_id)
        tenant_keys = self._key("tenant-keys", tenant_id)

        async def revoke_keys_and_delete(pipe: Pipeline | ClusterPipeline) -> None:
            document = await pipe.get(tenant_record)
            if document is None:
                raise NotFound(f"no tenant {tenant_id!r}")
            key_ids = cast(list[bytes], await pipe.zrange(tenant_keys, 0, -1))
            key_records = [self._key("key", key_id.decode()) for key_id in key_ids]
            if key_records:
                await pipe.watch(*key_records)
            # Every key record has its document.
            key_documents = [cast(bytes, await pipe.hget(record, "doc")) for record in key_records]
            revoked_at = time.time()
            pipe.multi()  # type: ignore[no-untyped-call]  # redis.asyncio leaves it unannotated
            for record, key_document in zip(key_records, key_documents, strict=True):
                key = orjson.loads(key_document)
                if key["revoked_at"] is None:
                    key["revoked_at"] = revoked_at
                    pipe.hset(record, "doc", orjson.dumps(key))
            name = orjson.loads(document)["name"]
            pipe.delete(tenant_record, self._key("tenant-name", name))
            pipe.zrem(self._key("tenants"), tenant_id)

        # redis-py types RedisCluster.transaction's `func` as a coroutine; it is a function
        await self._redis.transaction(
            revoke_keys_and_delete,  # type: ignore[arg-type]
            tenant_record,
            tenant_keys,
        )

    async def create_key(self, key: ApiKey) -> None:
        outcome = await self._create_key(
            keys=[
                self._key("key", key.id),
                self._key("tenant", key.tenant_id),
                self._key("keys"),
                self._key("tenant-keys", key.tenant_id),
                *(self._key("key-hash", h) for h in key.secret_hashes()),
            ],
            args=[_dump(key), key.id, key.created_at, _optional(key.last_used_at)],
        )
        _raise_for(
            outcome,
            not_found=f"no tenant {key.tenant_id!r}",
            conflict=f"a key with id {key.id!r} or this secret exists",
        )

    async def get_key(self, key_id: str) -> ApiKey | None:
        document, last_used_at = await self._redis.hmget(
            self._key("key", key_id), ["doc", "last_used_at"]
        )
        return _load_key(document, last_used_at)

    async def find_key_by_hash(self, secret_hash: str) -> ApiKey | None:
        key_id = cast(bytes | None, await self._redis.get(self._key("key-hash", secret_hash)))
        return None if key_id is None else await self.get_key(key_id.decode())

    async def list_keys(
        self, tenant_id: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[ApiKey]:
        if limit <= 0:
            return []
        index = self._key("keys") if tenant_id is None else self._key("tenant-keys", tenant_id)
        key_ids = cast(list[bytes], await self._redis.zrange(index, offset, offset + limit - 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hmget(self._key("key", key_id.decode()), ["doc", "last_used_at"])
            rows = await pipe.execute()
        keys = (_load_key(document, last_used_at) for document, last_used_at in rows)
        return [key for key in keys if key is not None]

    async def update_key(self, key: ApiKey) -> None:
        outcome = await self._update_key(
            keys=[
                self._key("key", key.id),
                self._key("keys"),
                self._key("tenant-keys", key.tenant_id),
                *(self._key("key-hash", h) for h in key.secret_hashes()),
            ],
            args=[
                _dump(key),
                key.id,
                key.created_at,
                _optional(key.last_used_at),
                self._key("key-hash", ""),
                self._key("tenant-keys", ""),
            ],
        )
        _raise_for(
            outcome,
            not_found=f"no key {key.id!r}",
            conflict="another key has this secret",
        )

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if last_used:
            await self._touch_keys(
                keys=[self._key("key", key_id) for key_id in last_used],
                args=list(last_used.values()),
            )

    async def append_audit(self, entry: AuditEntry) -> None:
        outcome = await self._append_audit(
            keys=[
                self._key("audit"),
                self._key("audit-by-time"),
                self._key("audit-target", entry.target_id),
                self._key("audit-action", entry.action),
            ],
            args=[entry.id, _dump(entry), entry.at],
        )
        _raise_for(outcome, conflict=f"audit entry {entry.id!r} exists")

    async def list_audit(
        self,
        target_id: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        # Read the most selective index; only with both filters does a page need filtering,
        # and then it is read in pages until `offset + limit` entries matched or the index
        # ends (the target's index: a few entries per record).
        if target_id is not None:
            index = self._key("audit-target", target_id)
        elif action is not None:
            index = self._key("audit-action", action)
        else:
            index = self._key("audit-by-time")
        filtered = target_id is not None and action is not None
        start, skipped = (0, offset) if filtered else (offset, 0)
        entries: list[AuditEntry] = []
        while len(entries) < skipped + limit:
            entry_ids = cast(
                list[bytes],
                await self._redis.zrevrangebyscore(
                    index, "+inf", "-inf" if since is None else since, start=start, num=limit
                ),
            )
            if not entry_ids:
                break
            documents = await self._redis.hmget(self._key("audit"), entry_ids)
            page = (audit_from_dict(orjson.loads(d)) for d in documents if d is not None)
            entries.extend(e for e in page if action is None or e.action == action)
            start += len(entry_ids)
        return entries[skipped : skipped + limit]

    async def publish_invalidation(self) -> None:
        channel = self._key("invalidate")
        if isinstance(self._redis, RedisCluster):
            await self._redis.spublish(channel, b"")
        else:
            await self._redis.publish(channel, b"")

    async def listen_invalidations(self, handler: InvalidationHandler) -> None:
        """Call `handler` per published invalidation, and once after every re-subscription.

        The listener has a connection of its own without retries, to the server that serves
        the channel (on a Cluster: its slot's primary, found again on every subscription):
        redis-py would otherwise reconnect and re-subscribe silently, and the invalidations
        published while the connection was down would be lost without the handler hearing of
        it.
        """
        channel = self._key("invalidate")
        sharded = parse_redis_url(self._url).is_cluster
        subscribed_before = False
        failing = False
        while True:
            try:
                listener = await pinned_client(
                    self._url, channel, self._timeout_s, self.listener_name
                )
                try:
                    async with listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                        if sharded:
                            await pubsub.ssubscribe(channel)
                        else:
                            await pubsub.subscribe(channel)
                        failing = False
                        if subscribed_before:
                            await notify(handler)
                        subscribed_before = True
                        await _relay_messages(pubsub, handler)
                finally:
                    await listener.aclose()
            except (
                RedisConnectionError,
                RedisTimeoutError,
                RedisClusterException,
                OSError,
            ) as error:
                if not failing:
                    logger.warning("invalidation channel lost, re-subscribing: %s", error)
                failing = True
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


async def _relay_messages(pubsub: PubSub, handler: InvalidationHandler) -> None:
    """Call `handler` per message; raise ConnectionError when a PING goes unanswered, or when
    the server unsubscribed us (a Cluster does when the channel's slot moves)."""
    ping_unanswered = False
    while True:
        message = await pubsub.get_message(timeout=LISTENER_PING_INTERVAL_S)
        if not pubsub.subscribed:
            raise RedisConnectionError("the server ended the invalidation subscription")
        if message is None:
            if ping_unanswered:
                raise RedisConnectionError("the invalidation channel did not answer PING")
            await pubsub.ping()
            ping_unanswered = True
            continue
        ping_unanswered = False
        if message["type"] in ("message", "smessage"):
            await notify(handler)


def _dump(record: Tenant | ApiKey | AuditEntry) -> bytes:
    return orjson.dumps(to_dict(record))


def _optional(value: float | None) -> float | str:
    """Lua scripts receive strings only; '' stands for None."""
    return "" if value is None else value


def _load_key(document: bytes | str | None, last_used_at: bytes | str | None) -> ApiKey | None:
    if document is None:
        return None
    key = key_from_dict(orjson.loads(document))
    key.last_used_at = None if last_used_at is None else float(last_used_at)
    return key


def _raise_for(outcome: Any, *, conflict: str = "", not_found: str = "") -> None:
    """Turn a script's outcome into the store's error, with the caller's message for it."""
    if outcome == b"not_found":
        raise NotFound(not_found)
    if outcome == b"conflict":
        raise Conflict(conflict)
