"""The gateway processes of a deployment, counted: exact shares, and the picture through Redis
as processes come and go."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.peers import PEER_TTL_S, Peers, RedisPeers, part
from tests.fixtures.redis import delete_prefixed_keys


@pytest.mark.parametrize("total", [1, 4, 63, 64, 65])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_the_parts_add_up_to_the_total(total: int, count: int) -> None:
    parts = [part(total, count, rank) for rank in range(count)]
    assert max(parts) - min(parts) <= 1
    assert sum(parts) == total


def test_listeners_hear_the_picture_now_and_every_change() -> None:
    peers = Peers(1, 0)
    heard: list[tuple[int, int]] = []
    peers.subscribe(lambda count, rank: heard.append((count, rank)))
    peers.update(3, 2)
    peers.update(3, 2)  # no change, nothing heard
    peers.update(2, 1)
    assert heard == [(1, 0), (3, 2), (2, 1)]


@pytest_asyncio.fixture(loop_scope="function")
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"test-{uuid.uuid4().hex}:"
    yield prefix
    await delete_prefixed_keys(redis_url, prefix)


async def test_processes_count_each_other_through_redis(redis_url: str, prefix: str) -> None:
    processes = [RedisPeers(redis_url, prefix, 0.5, workers=1) for _ in range(3)]
    for peers in processes:
        await peers.announce()
    for peers in processes:
        await peers.announce()
    assert [peers.count for peers in processes] == [3, 3, 3]
    assert sorted(peers.rank for peers in processes) == [0, 1, 2]
    await processes[0].close()  # a process that stops leaves at once
    for peers in processes[1:]:
        await peers.announce()
    assert [peers.count for peers in processes[1:]] == [2, 2]
    assert sorted(peers.rank for peers in processes[1:]) == [0, 1]
    for peers in processes[1:]:
        await peers.close()


async def test_a_silent_process_is_dropped(redis_url: str, prefix: str) -> None:
    alive, killed = (RedisPeers(redis_url, prefix, 0.5, workers=1) for _ in range(2))
    await killed.announce()
    await alive.announce()
    assert alive.count == 2
    await asyncio.sleep(PEER_TTL_S + 0.2)  # `killed` never announces again, nor leaves
    await alive.announce()
    assert (alive.count, alive.rank) == (1, 0)
    await alive.close()
    await killed.close()


async def test_an_unreachable_redis_keeps_the_local_picture(prefix: str) -> None:
    peers = RedisPeers("redis://127.0.0.1:9", prefix, 0.2, workers=4)
    await peers.start()  # no error: the gateway serves without Redis's picture
    assert peers.count == 4
    await peers.close()
