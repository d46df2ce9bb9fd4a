"""The gateway's Postgres database, reached the same way by every durable store (keys and
tenants, LoRA adapters, safety policies, usage).

One connection pool per database per process (`open_stores` opens it once and every Postgres
store shares it), psycopg 3's AsyncConnectionPool. Built without an event loop, like the other
stores (`gateway.stores`), it opens on first use. Its connections are in autocommit, so a
lone statement is its own transaction and a store opens one (`conn.transaction()`) only where
several statements must agree. Each connection is checked (an empty query) as it leaves the
pool, so one that a Postgres restart broke is replaced rather than failing a call; a call
that finds no connection within the store's budget fails as the store being unavailable.

The first connection also checks the schema (`gateway.postgres.schema`): the gateway's start
(`start`) refuses a database behind its migrations. When Postgres does not answer at start,
the gateway starts all the same, as it does with Redis away, and the first connection made
later checks it instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from gateway.postgres.schema import SchemaOutdated, require_current

logger = logging.getLogger("gateway.store")
# The stores' health logs an outage once each way (gateway.store_health); the pool would add a
# warning per reconnection attempt and per broken connection it drops, a line a second.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

POOL_MIN_SIZE = 2
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_S = 5  # libpq counts whole seconds, at least 2
APPLICATION_NAME = "vllm-gateway"

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


async def _configure(conn: Connection) -> None:
    """jsonb columns come back parsed by orjson, as the other stores parse their documents."""
    set_json_loads(orjson.loads, conn)


def connect_options(application_name: str = APPLICATION_NAME) -> dict[str, Any]:
    """What every connection of the gateway's is opened with (the pool's, a listener's)."""
    return {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": application_name,
    }


class PostgresDatabase:
    """The pool; closed when the last store using it closes."""

    def __init__(self, url: str, budget_s: float = 1.0) -> None:
        self.url = url
        self._users = 0
        self._schema_current = False
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            open=False,
            kwargs=connect_options(),
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            timeout=budget_s,
            name="vllm-gateway",
        )

    def used(self) -> PostgresDatabase:
        """This database for one more store."""
        self._users += 1
        return self

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for one call; back to the pool when the block ends."""
        if self._pool.closed:
            await self._pool.open()
        async with self._pool.connection() as conn:
            if not self._schema_current:
                await require_current(conn)
                self._schema_current = True
            yield conn

    async def read(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement."""
        async with self.connection() as conn:
            return await (await conn.execute(query, parameters)).fetchall()

    async def write(self, query: str, parameters: Sequence[Any] = ()) -> int:
        """One statement, its own transaction; the rows it changed."""
        async with self.connection() as conn:
            return (await conn.execute(query, parameters)).rowcount

    async def start(self) -> None:
        """Raise SchemaOutdated if the database is behind this gateway's migrations; a
        database that does not answer now is checked on the first connection instead."""
        try:
            async with self.connection():
                pass
        except SchemaOutdated:
            await self._pool.close()  # the gateway stops: leave no pool task connecting
            raise
        except psycopg.OperationalError as error:
            logger.warning(
                "Postgres does not answer at start (%r); its schema version is checked on the "
                "first connection",
                error,
            )

    async def close(self) -> None:
        """One store is done with the database; the last one closes the pool."""
        self._users -= 1
        if self._users <= 0 and not self._pool.closed:
            await self._pool.close()
