"""The limiter's pipelined Redis connection, against a real redis-server, and its routing over
Sentinel and Cluster."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from gateway.limits.resp import (
    Endpoint,
    IncompleteReply,
    PipelinedRedis,
    RedisReplyError,
    open_servers,
    parse_reply,
)
from tests.fixtures.redis_topologies import topology_url
from tests.gateway.limits.conftest import RedisServer


async def test_concurrent_calls_each_get_their_own_reply(own_redis: RedisServer) -> None:
    connection = PipelinedRedis(Endpoint.from_url(own_redis.url), 2.0, 2.0)
    replies = await asyncio.gather(*(connection.call("ECHO", f"n{i}") for i in range(300)))
    assert replies == [f"n{i}".encode() for i in range(300)]
    assert await connection.call("EVAL", "return {1, {2, 'x'}, -3}", 0) == [1, [2, b"x"], -3]
    await connection.close()


class RecordedTransport:
    """A connection's transport, noting each write."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()


async def test_the_calls_of_one_turn_of_the_loop_go_out_in_one_write(
    own_redis: RedisServer,
) -> None:
    connection = PipelinedRedis(Endpoint.from_url(own_redis.url), 2.0, 2.0)
    await connection.call("PING")
    protocol = connection._protocol
    assert protocol is not None and protocol.transport is not None
    recorded = RecordedTransport(protocol.transport)
    protocol.transport = recorded  # type: ignore[assignment]
    replies = await asyncio.gather(*(connection.call("ECHO", f"n{i}") for i in range(5)))
    assert replies == [f"n{i}".encode() for i in range(5)]
    assert len(recorded.writes) == 1  # one system call, one wake-up of Redis
    assert await connection.call("ECHO", "alone") == b"alone"
    assert len(recorded.writes) == 2
    await connection.close()


async def test_errors_are_raised_and_the_connection_stays_usable(own_redis: RedisServer) -> None:
    connection = PipelinedRedis(Endpoint.from_url(own_redis.url), 2.0, 2.0)
    with pytest.raises(RedisReplyError) as caught:
        await connection.call("EVALSHA", "0" * 40, 0)
    assert caught.value.is_noscript
    assert await connection.call("PING") == b"PONG"
    await connection.close()


async def test_a_caller_that_gave_up_does_not_shift_the_replies(own_redis: RedisServer) -> None:
    connection = PipelinedRedis(Endpoint.from_url(own_redis.url), 2.0, 2.0)
    await connection.call("PING")
    with redis.Redis.from_url(own_redis.url) as client:
        client.execute_command("CLIENT", "PAUSE", 300, "ALL")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await connection.call("ECHO", "late")
    assert await connection.call("ECHO", "mine") == b"mine"
    await connection.close()


async def test_reconnects_after_redis_restarts(own_redis: RedisServer) -> None:
    connection = PipelinedRedis(Endpoint.from_url(own_redis.url), 2.0, 2.0)
    assert await connection.call("PING") == b"PONG"
    own_redis.stop()
    with pytest.raises(ConnectionError):
        await connection.call("PING")
    own_redis.start()
    assert await connection.call("PING") == b"PONG"
    await connection.close()


def test_replies_cut_anywhere_wait_for_the_rest() -> None:
    whole = b"*3\r\n:1\r\n$5\r\nhello\r\n*1\r\n-ERR no\r\n"
    value, end = parse_reply(whole, 0)
    assert value[:2] == [1, b"hello"] and isinstance(value[2][0], RedisReplyError)
    assert end == len(whole)
    for cut in range(1, len(whole)):
        with pytest.raises(IncompleteReply):
            parse_reply(whole[:cut], 0)


def test_a_redirection_names_where_to_go() -> None:
    assert RedisReplyError("MOVED 3999 127.0.0.1:6381").redirection() == (
        "MOVED",
        "127.0.0.1",
        6381,
    )
    assert RedisReplyError("ASK 3999 ::1:6381").redirection() == ("ASK", "::1", 6381)
    assert RedisReplyError("ERR wrong number of arguments").redirection() is None


@pytest.mark.parametrize("topology", ["redis-sentinel", "redis-cluster"])
async def test_every_call_reaches_the_server_of_its_key(
    topology: str, request: pytest.FixtureRequest
) -> None:
    servers = open_servers(topology_url(request, topology), 2.0, 2.0)
    keys = [f"test-resp-{uuid.uuid4().hex}:{{tenant-{i}}}" for i in range(40)]  # many slots
    try:
        await servers.on_every_primary("PING")
        assert await asyncio.gather(*(servers.call(k, "SET", k, k) for k in keys)) == [b"OK"] * 40
        assert [await servers.call(key, "GET", key) for key in keys] == [k.encode() for k in keys]
    finally:
        for key in keys:
            await servers.call(key, "DEL", key)
        await servers.close()
