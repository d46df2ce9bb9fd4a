"""The gateway processes that share one deployment's upstream: how many there are now, and
this one's place among them, so that what must hold for the deployment as a whole can be
divided exactly between them.

Two things are divided: the fair queue's in-flight budget (`isolation.fair_queue.
max_in_flight` is the deployment's: each process keeps its share, so vLLM never sees more
than the budget however many workers and instances run) and early dispatch's part of the
limits' spare room (gateway/limits/early.py).

Without Redis, the processes are the workers of one instance: their number is
`server.workers`, and a worker's place its index (`WORKER_INDEX_ENV`, set by
gateway/workers.py). With Redis, every process (each worker of each instance) announces itself
in one sorted set, ``{prefix}peers``, scored by when it last did so, once a second; members
silent for `PEER_TTL_S` are dropped, so a killed instance's share goes back to the others
within seconds. One pipelined round trip per process per second; a Redis outage keeps the last
picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable

from gateway.redis_client import redis_client

logger = logging.getLogger("gateway.peers")
WORKER_INDEX_ENV = "VLLM_GATEWAY_WORKER_INDEX"
ANNOUNCE_INTERVAL_S = 1.0
PEER_TTL_S = 3.0
Listener = Callable[[int, int], None]  # (count, rank)


def part(total: int, count: int, rank: int) -> int:
    """Process `rank`'s exact part of `total` divided between `count` processes: the parts of
    all of them add up to it."""
    base, extra = divmod(total, count)
    return base + (1 if rank < extra else 0)


class Peers:
    """This process's view: `count` processes, this one `rank` (0-based) among them.
    Listeners hear every change of the picture."""

    def __init__(self, count: int, rank: int) -> None:
        self.count = max(1, count)
        self.rank = rank % self.count
        self._listeners: list[Listener] = []

    @classmethod
    def of_workers(cls, workers: int) -> Peers:
        """The workers of this one instance; this process's index from its environment."""
        return cls(workers, int(os.environ.get(WORKER_INDEX_ENV, "0")))

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)
        listener(self.count, self.rank)

    def update(self, count: int, rank: int) -> None:
        count, rank = max(1, count), rank % max(1, count)
        if (count, rank) == (self.count, self.rank):
            return
        self.count, self.rank = count, rank
        for listener in self._listeners:
            listener(count, rank)


class RedisPeers(Peers):
    """`Peers` counted through Redis: a component (`run_background` announces, `close` leaves)."""

    def __init__(self, url: str, prefix: str, timeout_s: float, workers: int) -> None:
        local = Peers.of_workers(workers)
        super().__init__(local.count, local.rank)
        self._key = f"{prefix}peers"
        # sorted by id, so the ranks are the same in every process's view
        self._id = f"{time.time():.6f}-{os.getpid()}-{secrets.token_hex(4)}"
        self._redis = redis_client(url, timeout_s)

    async def announce(self) -> None:
        """Say this process is alive, forget the silent ones, and read the picture."""
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._key, {self._id: now})
            pipe.zremrangebyscore(self._key, "-inf", now - PEER_TTL_S)
            pipe.zrange(self._key, 0, -1)
            pipe.expire(self._key, int(PEER_TTL_S * 10))
            _, _, members, _ = await pipe.execute()
        ids = sorted(member.decode() if isinstance(member, bytes) else member for member in members)
        if self._id in ids:
            self.update(len(ids), ids.index(self._id))

    async def start(self) -> None:
        """The picture before the first request (an unreachable Redis leaves the local one)."""
        await self._announce_once()

    async def run_background(self) -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_INTERVAL_S)
            await self._announce_once()

    async def _announce_once(self) -> None:
        try:
            await self.announce()
        except Exception as error:  # keep the last picture; try again
            logger.debug("could not announce this gateway process: %r", error)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.zrem(self._key, self._id)
        await self._redis.aclose()
