"""The one way the gateway's stores open a Redis client: same timeouts, same retry policy.

A call waits at most `timeout_s` per attempt. The states in which Redis surely did not run the
command -- a refused or reset connection (also a stale pooled one), LOADING while it reads its
AOF after a restart, READONLY and CLUSTERDOWN/TRYAGAIN during a failover -- are retried with a
short exponential backoff; the store's total budget (`gateway.store_health`) caps the whole.
A timeout is not retried: the command may have run, and the budget is spent waiting anyway.

The rate limiter keeps its own pipelined connection (gateway/limits/resp.py): it is on every
request's path and has a much smaller time budget.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
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


def redis_client(
    url: str,
    timeout_s: float,
    *,
    retries: int = _RETRIES,
    decode_responses: bool = False,
    client_name: str | None = None,
) -> aioredis.Redis:
    return aioredis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.025), retries, TRANSIENT_ERRORS),
        decode_responses=decode_responses,
        client_name=client_name,
    )
