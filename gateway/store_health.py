"""What a store outage looks like to the rest of the gateway: one typed error and two log lines.

Every store (keys and tenants, LoRA adapters, safety policies, usage) wraps its public
coroutine methods with `guarded`. A backend failure that means "not available now" -- a
timeout, a refused or reset connection, Redis loading its data set or read-only during a
failover, SQLite locked or failing I/O, Postgres without a connection in time -- becomes
`StoreUnavailable`, which every surface answers as 503 with Retry-After; anything else (a
bug) still raises as it is. Each call has a total time budget, within which the Redis client
retries the transient states with backoff (`gateway.redis_client`).

While a store is known to be down, one call at a time goes through as a probe and the others
fail at once: a hung Redis would otherwise make every request wait out the budget, and the
first probe that succeeds brings the store back without delay. The
first failure writes one log line and the first success after it another, instead of a
traceback per request; metrics count failures per store and kind.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import psycopg
import psycopg_pool
from redis import exceptions as redis_errors

from gateway.core.errors import StoreUnavailable
from gateway.observability import metrics

logger = logging.getLogger("gateway.store")

_UNGUARDED = frozenset({"start", "close", "listen_invalidations", "run_background"})

# Redis's "cannot answer now" states; any other ResponseError is a bug and stays a 500.
_REDIS_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (redis_errors.BusyLoadingError, "loading"),
    (redis_errors.TimeoutError, "timeout"),
    (redis_errors.ReadOnlyError, "readonly"),
    (redis_errors.ClusterDownError, "failover"),
    (redis_errors.TryAgainError, "failover"),
    (redis_errors.SlotNotCoveredError, "failover"),
    (redis_errors.OutOfMemoryError, "out_of_memory"),
    (redis_errors.ConnectionError, "connection"),
)
# Postgres's "cannot answer now": a pool without a connection in time, a lost or refused
# connection, a cancelled statement, a standby, lock contention; a bad statement stays a 500.
_POSTGRES_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (psycopg_pool.PoolTimeout, "timeout"),
    (psycopg.errors.QueryCanceled, "timeout"),
    (psycopg.errors.ReadOnlySqlTransaction, "readonly"),
    (psycopg.errors.TransactionRollback, "locked"),
    (psycopg.OperationalError, "connection"),
)
_REDIS_ASYNCIO = os.path.join("redis", "asyncio", "")
# SQLite's OperationalError also means a bad statement (a bug); these messages mean the file.
_SQLITE_UNAVAILABLE = ("locked", "busy", "disk i/o", "unable to open", "readonly", "full")


def is_unavailable(error: Exception) -> bool:
    """True when `error` says the store cannot answer now (rather than that we erred)."""
    if _unreachable_cluster(error) or _redis_connection_state(error):
        return True
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return any(words in message for words in _SQLITE_UNAVAILABLE)
    kinds = (*_REDIS_KINDS, *_POSTGRES_KINDS)
    return isinstance(error, (*(kind for kind, _ in kinds), TimeoutError, OSError))


def _unreachable_cluster(error: Exception) -> bool:
    """redis-py's Cluster client says "cannot be connected" with a RedisClusterException
    raised from the nodes' connection errors; its other RedisClusterExceptions are bugs
    (keys of several slots in one command)."""
    cause = error.__cause__
    return (
        isinstance(error, redis_errors.RedisClusterException)
        and isinstance(cause, Exception)
        and is_unavailable(cause)
    )


def _redis_connection_state(error: Exception) -> bool:
    """redis-py's Cluster client, during a failover, can fail inside its own connection code
    on a connection the node's death closed under it (a RuntimeError from the event loop's
    closed transport, an AttributeError on a writer already gone: seen in
    tests/chaos/test_redis_failover.py). Raised there, or in what that code called, they mean
    the node went away, not a bug of ours."""
    if not isinstance(error, RuntimeError | AttributeError):
        return False
    trace = error.__traceback__
    while trace is not None:
        if _REDIS_ASYNCIO in trace.tb_frame.f_code.co_filename:
            return True
        trace = trace.tb_next
    return False


def failure_kind(error: Exception) -> str:
    if _unreachable_cluster(error) or _redis_connection_state(error):
        return "connection"
    for error_type, kind in (*_REDIS_KINDS, *_POSTGRES_KINDS):
        if isinstance(error, error_type):
            return kind
    if isinstance(error, sqlite3.OperationalError):
        return "locked" if "locked" in str(error) else "io"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "connection"


class StoreHealth:
    """One store's availability as this process sees it."""

    def __init__(self, store: str, budget_s: float) -> None:
        self.store = store
        self.budget_s = budget_s
        self._down_since: float | None = None
        self._kind = ""
        self._probing = False
        metrics.store_available(store, True)

    @property
    def available(self) -> bool:
        return self._down_since is None

    def unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(self.store, self._kind)

    def before_call(self) -> bool:
        """While the store is down: this call is the probe (True; `probe_finished` must
        follow), or, if one is out, it fails now."""
        if self._down_since is None:
            return False
        if self._probing:
            raise self.unavailable()
        self._probing = True
        return True

    def probe_finished(self) -> None:
        self._probing = False

    def succeeded(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "the %s store answers again after %.1f s",
                self.store,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            metrics.store_available(self.store, True)

    def failed(self, error: Exception) -> StoreUnavailable:
        kind = failure_kind(error)
        metrics.store_failure(self.store, kind)
        if self._down_since is None:
            logger.warning("the %s store is unavailable (%s): %r", self.store, kind, error)
            self._down_since = time.monotonic()
            metrics.store_available(self.store, False)
        self._kind = kind
        return self.unavailable()


class HasHealth(Protocol):
    health: StoreHealth


class CheckableStore(Protocol):
    """What readiness needs of a store: its health, and a cheap call that refreshes it."""

    @property
    def health(self) -> StoreHealth: ...

    async def ping(self) -> None: ...


StoreClass = TypeVar("StoreClass", bound=type)


def guarded(cls: StoreClass) -> StoreClass:
    """Class decorator: every public coroutine method (but `start` and `close`, the
    invalidation listener and background loops, which run their own recovery) goes through
    the instance's `health`."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or name in _UNGUARDED or not inspect.iscoroutinefunction(member):
            continue
        setattr(cls, name, _guard(member))
    return cls


# Set while a guarded call runs, so that a store method calling another is one call: one
# budget, one probe.
_in_store_call: ContextVar[bool] = ContextVar("in_store_call", default=False)


def _guard(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(self: HasHealth, *args: Any, **kwargs: Any) -> Any:
        if _in_store_call.get():
            return await method(self, *args, **kwargs)
        health = self.health
        probe = health.before_call()
        outer = _in_store_call.set(True)
        try:
            async with asyncio.timeout(health.budget_s):
                result = await method(self, *args, **kwargs)
        except Exception as error:
            if not is_unavailable(error):
                raise
            raise health.failed(error) from None
        finally:
            _in_store_call.reset(outer)
            if probe:
                health.probe_finished()
        health.succeeded()
        return result

    return call
