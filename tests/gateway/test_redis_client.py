"""The stores' Redis client rides out Redis's transient states, as a real Redis sends them; and
the URL says which topology it talks to.

A small TCP server speaks RESP: it answers the first commands with the error a restarting or
failing-over Redis sends (LOADING, READONLY), then answers normally.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import ValidationError
from redis import exceptions as redis_errors

from gateway.redis_client import (
    RedisAddress,
    Topology,
    keyspace,
    parse_redis_url,
    redis_client,
)
from gateway.settings import StoreSettings

LOADING = b"-LOADING Redis is loading the dataset in memory\r\n"
READONLY = b"-READONLY You can't write against a read only replica.\r\n"


@asynccontextmanager
async def redis_that_answers(replies: list[bytes]) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that answers each PING with the next of `replies`, then +PONG, and the
    client's handshake (HELLO, CLIENT SETINFO) as Redis 7 does."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.startswith(b"*"):
                    continue
                words = []
                for _ in range(int(line[1:])):
                    await reader.readline()  # $length
                    words.append((await reader.readline()).strip())
                received.append(b" ".join(words))
                command = words[0].upper()
                if command == b"HELLO":
                    writer.write(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                elif command == b"PING":
                    writer.write(replies.pop(0) if replies else b"+PONG\r\n")
                else:  # CLIENT SETINFO and the like
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("transient", [LOADING, READONLY])
async def test_a_transient_state_is_retried(transient: bytes) -> None:
    async with redis_that_answers([transient, transient]) as (url, received):
        client = redis_client(url, timeout_s=1.0)
        assert await client.ping()
        await client.aclose()
    assert received.count(b"PING") == 3


async def test_it_gives_up_after_its_retries() -> None:
    async with redis_that_answers([LOADING] * 50) as (url, received):
        client = redis_client(url, timeout_s=1.0)
        with pytest.raises(redis_errors.BusyLoadingError):
            await client.ping()
        await client.aclose()
    assert received.count(b"PING") == 5  # the first try and four retries


async def test_other_errors_are_not_retried() -> None:
    async with redis_that_answers([b"-ERR unknown command\r\n"]) as (url, received):
        client = redis_client(url, timeout_s=1.0)
        with pytest.raises(redis_errors.ResponseError):
            await client.ping()
        await client.aclose()
    assert received.count(b"PING") == 1


def test_the_url_scheme_chooses_the_topology() -> None:
    assert parse_redis_url("redis://h:1/2") == RedisAddress(Topology.SINGLE, "redis://h:1/2")
    assert parse_redis_url("unix:///run/redis.sock").topology is Topology.SINGLE
    cluster = parse_redis_url("rediss+cluster://u:p%40ss@a:7000,b,[::1]:7002")
    assert cluster.topology is Topology.CLUSTER
    assert cluster.nodes == (("a", 7000), ("b", 6379), ("::1", 7002))
    assert (cluster.tls, cluster.username, cluster.password) == (True, "u", "p@ss")
    sentinel = parse_redis_url("redis+sentinel://s1:26379,s2:26379/gateway/3")
    assert sentinel.topology is Topology.SENTINEL
    assert (sentinel.service, sentinel.db, sentinel.tls) == ("gateway", 3, False)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://a:1/0",  # a Cluster has no databases
        "redis+cluster://a:1?x=1",
        "redis+sentinel://a:1",  # no service
        "redis+sentinel://a:1/gateway/x",
        "redis+cluster://a:port",
    ],
)
def test_malformed_cluster_and_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_redis_url(url)
    with pytest.raises(ValidationError, match="redis_url"):
        StoreSettings(redis_url=url)


def test_only_a_cluster_gets_hash_tags() -> None:
    assert keyspace(parse_redis_url("redis://h"), "vgw:", "keys") == "vgw:"
    assert keyspace(parse_redis_url("redis+sentinel://h/s"), "vgw:", "keys") == "vgw:"
    assert keyspace(parse_redis_url("redis+cluster://h"), "vgw:rl:", "ten_1") == "vgw:rl:{ten_1}:"
