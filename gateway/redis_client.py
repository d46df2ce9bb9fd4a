"""The one way the gateway's stores open a Redis client: same timeouts, same retry policy,
whichever topology `store.redis_url` names.

The URL chooses the topology:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one Redis server (redis-py's URL forms).
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster`` for TLS):
  a Redis Cluster, found from these seed nodes.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel``): the primary that these sentinels name `service`; the credentials and
  TLS are the data servers' (the sentinels are asked without).

On a single server and under Sentinel (one primary) every key keeps the single-server layout;
on a Cluster each component puts the keys one script or transaction touches under one hash tag
(`keyspace`), so that no command on the hot path spans slots.

A call waits at most `timeout_s` per attempt. The states in which Redis surely did not run the
command -- a refused or reset connection (also a stale pooled one), LOADING while it reads its
AOF after a restart, READONLY and CLUSTERDOWN/TRYAGAIN during a failover -- are retried with a
short exponential backoff; the store's total budget (`gateway.store_health`) caps the whole.
A timeout is not retried: the command may have run, and the budget is spent waiting anyway.

The rate limiter keeps its own pipelined connections (gateway/limits/resp.py): it is on every
request's path and has a much smaller time budget. It reads the same URLs (`parse_redis_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)

TRANSIENT_ERRORS = (RedisConnectionError, ReadOnlyError, ClusterDownError, TryAgainError)
_RETRIES = 4  # 25 + 50 + 100 + 200 ms of backoff at most
_DEFAULT_PORT = 6379

RedisClient = aioredis.Redis | RedisCluster


class Topology(Enum):
    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where `store.redis_url` says Redis is. For a single server only `url` counts."""

    topology: Topology
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # Cluster: seed nodes; Sentinel: the sentinels
    service: str = ""  # Sentinel: the primary's name
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0

    @property
    def is_cluster(self) -> bool:
        return self.topology is Topology.CLUSTER


def parse_redis_url(url: str) -> RedisAddress:
    """Raises ValueError for a malformed Cluster or Sentinel URL."""
    scheme, separator, rest = url.partition("://")
    base, _, kind = scheme.partition("+")
    if not separator or kind not in ("cluster", "sentinel") or base not in ("redis", "rediss"):
        return RedisAddress(Topology.SINGLE, url)
    if "?" in rest or "#" in rest:
        raise ValueError(f"{scheme}:// URLs take no query or fragment: {url!r}")
    location, _, path = rest.partition("/")
    credentials, _, hosts = location.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = tuple(_host_port(host, url) for host in hosts.split(","))
    parts = [unquote(part) for part in path.split("/") if part]
    common: dict[str, Any] = {
        "url": url,
        "nodes": nodes,
        "tls": base == "rediss",
        "username": unquote(username) or None,
        "password": unquote(password) or None,
    }
    if kind == "cluster":
        if parts:
            raise ValueError(f"a Cluster has one database, name none: {url!r}")
        return RedisAddress(Topology.CLUSTER, **common)
    if not 1 <= len(parts) <= 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"a Sentinel URL ends in /service or /service/db: {url!r}")
    db = int(parts[1]) if len(parts) == 2 else 0
    return RedisAddress(Topology.SENTINEL, service=parts[0], db=db, **common)


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    host = host.strip("[]")  # an IPv6 address in brackets
    if not host or (port and not port.isdigit()):
        raise ValueError(f"not a host:port list: {url!r}")
    return host, int(port) if port else _DEFAULT_PORT


def keyspace(address: RedisAddress, prefix: str, tag: str) -> str:
    """What the keys that must share a slot start with: on a Cluster `prefix{tag}:` (a hash
    tag: Redis hashes only what is between the braces), elsewhere `prefix` alone, the
    single-server layout as it always was."""
    return f"{prefix}{{{tag}}}:" if address.is_cluster else prefix


def redis_client(
    url: str,
    timeout_s: float,
    *,
    retries: int = _RETRIES,
    decode_responses: bool = False,
    client_name: str | None = None,
) -> RedisClient:
    address = parse_redis_url(url)
    options = _options(timeout_s, retries, decode_responses, client_name)
    if address.is_cluster:
        return _cluster_client(address, options)
    return _server_client(address, options)


async def pinned_client(url: str, key: str, timeout_s: float, client_name: str) -> aioredis.Redis:
    """A client without retries to the one server that serves `key` now: the primary of its
    slot on a Cluster, else the server (or the primary that the sentinels name). For a
    connection that must fail when that server goes, such as a subscription."""
    address = parse_redis_url(url)
    options = _options(timeout_s, 0, False, client_name)
    if not address.is_cluster:
        return _server_client(address, options)
    cluster = _cluster_client(address, options)
    try:
        await cluster.initialize()
        node = cluster.get_node_from_key(key)
    finally:
        await cluster.aclose()
    if node is None:
        raise RedisConnectionError(f"no Cluster node serves {key!r} now")
    return aioredis.Redis(
        host=node.host, port=int(node.port), ssl=address.tls, **_credentials(address), **options
    )


def _options(
    timeout_s: float, retries: int, decode_responses: bool, client_name: str | None
) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.025), retries, TRANSIENT_ERRORS),
        "decode_responses": decode_responses,
        "client_name": client_name,
    }


def _credentials(address: RedisAddress) -> dict[str, Any]:
    return {"username": address.username, "password": address.password}


def _cluster_client(address: RedisAddress, options: dict[str, Any]) -> RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in address.nodes]
    return RedisCluster(startup_nodes=nodes, ssl=address.tls, **_credentials(address), **options)


def _server_client(address: RedisAddress, options: dict[str, Any]) -> aioredis.Redis:
    """The URL's server, or the primary that the sentinels name."""
    if address.topology is Topology.SINGLE:
        return aioredis.from_url(address.url, **options)
    timeouts = {name: options[name] for name in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(address.nodes, sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    primary: SentinelPrimary = sentinel.master_for(
        address.service,
        redis_class=SentinelPrimary,
        ssl=address.tls,
        db=address.db,
        **_credentials(address),
        **options,
    )
    primary.sentinels = sentinel
    return primary


class SentinelPrimary(aioredis.Redis):
    """The primary's client, which also closes the connections to the sentinels."""

    sentinels: Sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.sentinels.aclose()
