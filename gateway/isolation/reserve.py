"""The fair queue's reserve, kept once for the whole deployment and lent to its processes.

The reserve (gateway/isolation/fair_queue.py) is what lets a quiet tenant in at once while a
noisy one fills the budget. Divided between N gateway processes it would be N small reserves,
each used up by a burst that one large reserve absorbs: with 4 workers a quiet tenant's p99
time to first token rose 55% under noise against 12% with one (bench/results/fairness.md).
So each process keeps only its share of the budget's open part, and borrows reserve slots,
one per request of a tenant below its share, from one pool:

- `LocalReserve`: the process's own counter. One process, or several that share nothing (the
  pool is then this process's share of the reserve).
- `FileReserve`: the workers of one instance without Redis. A small file, memory-mapped by
  every worker (its path in `RESERVE_FILE_ENV`, made by gateway/workers.py), holds a cell per
  worker; a borrow locks the file (flock), adds the cells and takes a slot if there is room.
  A worker that starts (again) zeroes its cell: what its predecessor held died with it.
- `RedisReserve`: every process of every instance on one Redis (single, Sentinel or Cluster).
  One hash key holds each borrowing process's count and when it last said it was alive; a
  borrow is one short script on that key, which also forgets processes silent for
  `HOLDER_TTL_S` (killed: their requests went with them). Only the slow path asks: a request
  that finds a free slot of the process's own never touches Redis, and a process holding no
  reserve slot sends nothing. A process with a waiter below its share asks again now and then
  (gateway/isolation/fair_queue.py), since nothing tells it that a slot came back.

A pool that cannot be reached lends nothing: requests then wait for their process's own slots,
as with a reserve divided. A borrow waits at most the limiter's Redis timeout, after a failure
none is tried for a second, and a borrow whose answer was lost is set right by the holder's
next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import secrets
import struct
import time
from collections.abc import Iterator
from typing import Protocol

from gateway.redis_client import redis_client

logger = logging.getLogger("gateway.isolation")

RESERVE_FILE_ENV = "VLLM_GATEWAY_RESERVE_FILE"
HEARTBEAT_INTERVAL_S = 1.0
HOLDER_TTL_S = 3.0
_CELL = struct.Struct("<q")

# KEYS[1] the pool; ARGV: this process's field, the pool's capacity, the holders' TTL (ms).
# Fields: "<id>" the slots a process holds, "<id>:t" when it last said so (Redis's clock).
BORROW = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
local fields = redis.call('HGETALL', KEYS[1])
local values = {}
for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
local used = 0
for field, value in pairs(values) do
    if string.sub(field, -2) ~= ':t' then
        local seen = tonumber(values[field .. ':t'] or '0')
        if now - seen > ttl then
            redis.call('HDEL', KEYS[1], field, field .. ':t')
        else
            used = used + tonumber(value)
        end
    end
end
if used >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[1], ARGV[1] .. ':t', now)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
return 1
"""
GIVE_BACK = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':t')
end
return 1
"""
# ARGV: the field, the slots the process holds by its own count (-1: only that it is alive),
# the TTL (ms).
HEARTBEAT = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local held = tonumber(ARGV[2])
if held < 0 then
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
        redis.call('HSET', KEYS[1], ARGV[1] .. ':t', now)
    end
    return 0
end
if held == 0 then
    redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':t')
    return 0
end
redis.call('HSET', KEYS[1], ARGV[1], held, ARGV[1] .. ':t', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 10)
return held
"""


class ReservePool(Protocol):
    """Where a process borrows reserve slots. `shared`: whether other processes borrow from
    the same slots (then its capacity is the deployment's reserve, else this process's part)."""

    shared: bool

    def set_capacity(self, slots: int) -> None: ...

    async def borrow(self) -> bool:
        """Take a slot if one is free."""
        ...

    def give_back(self) -> None:
        """Return a slot that `borrow` gave (never blocks: a remote pool is told in the
        background)."""
        ...


class LocalReserve:
    """This process's own reserve."""

    shared = False

    def __init__(self, slots: int = 0) -> None:
        self._capacity = slots
        self._held = 0

    def set_capacity(self, slots: int) -> None:
        self._capacity = slots

    async def borrow(self) -> bool:
        if self._held >= self._capacity:
            return False
        self._held += 1
        return True

    def give_back(self) -> None:
        self._held -= 1


class FileReserve:
    """One reserve for the workers of one instance: a cell per worker in a shared file."""

    shared = True

    def __init__(self, path: str, index: int, workers: int) -> None:
        self._index = index
        self._capacity = 0
        self._file = open(path, "r+b")  # noqa: SIM115 -- open for the process's life
        size = _CELL.size * workers
        if os.fstat(self._file.fileno()).st_size < size:
            self._file.truncate(size)
        self._cells = mmap.mmap(self._file.fileno(), size)
        self._workers = workers
        with self._locked():
            self._write(index, 0)  # a worker started again: its predecessor's slots are gone

    def set_capacity(self, slots: int) -> None:
        self._capacity = slots

    async def borrow(self) -> bool:
        with self._locked():
            if sum(self._read(cell) for cell in range(self._workers)) >= self._capacity:
                return False
            self._write(self._index, self._read(self._index) + 1)
            return True

    def give_back(self) -> None:
        with self._locked():
            self._write(self._index, max(0, self._read(self._index) - 1))

    async def close(self) -> None:
        if self._file.closed:
            return
        with self._locked():
            self._write(self._index, 0)
        self._cells.close()
        self._file.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def _read(self, cell: int) -> int:
        value: int = _CELL.unpack_from(self._cells, cell * _CELL.size)[0]
        return value

    def _write(self, cell: int, value: int) -> None:
        _CELL.pack_into(self._cells, cell * _CELL.size, value)


class RedisReserve:
    """One reserve for every gateway process on one Redis: a component (`run_background`
    keeps this process's slots alive, `close` gives back what is left)."""

    shared = True

    def __init__(
        self, url: str, prefix: str, timeout_s: float, holder_ttl_s: float = HOLDER_TTL_S
    ) -> None:
        self._key = f"{prefix}fair-reserve"
        self._field = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._redis = redis_client(url, timeout_s)
        self._borrow = self._redis.register_script(BORROW)
        self._give_back = self._redis.register_script(GIVE_BACK)
        self._heartbeat = self._redis.register_script(HEARTBEAT)
        self._ttl_ms = int(holder_ttl_s * 1000)
        self._capacity = 0
        self._held = 0  # slots this process holds, by its own count
        self._pending: set[asyncio.Task[None]] = set()
        self._asking = 0  # borrows and give-backs sent, not yet answered
        self._failures = 0  # of those, how many failed: Redis's count may differ from ours
        self._unsure = False
        self._resting_until = 0.0

    def set_capacity(self, slots: int) -> None:
        self._capacity = slots

    async def borrow(self) -> bool:
        if self._capacity < 1 or time.monotonic() < self._resting_until:
            return False
        self._asking += 1
        try:
            granted = await self._borrow([self._key], [self._field, self._capacity, self._ttl_ms])
        except Exception as error:
            self._failed(error)  # it may have run: the next heartbeat sets the count right
            return False
        finally:
            self._asking -= 1
        if granted:
            self._held += 1
        return bool(granted)

    def give_back(self) -> None:
        self._held -= 1
        self._asking += 1
        task = asyncio.get_running_loop().create_task(self._send_give_back())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_give_back(self) -> None:
        try:
            await self._give_back([self._key], [self._field])
        except Exception as error:
            self._failed(error)
        finally:
            self._asking -= 1

    def _failed(self, error: Exception) -> None:
        self._failures += 1
        self._unsure = True
        # a Redis that hangs would cost every borrow its timeout: lend nothing for a while
        self._resting_until = time.monotonic() + HEARTBEAT_INTERVAL_S
        logger.debug("the fair queue's reserve pool did not answer: %r", error)

    async def heartbeat(self) -> None:
        """Keep this process's slots from being forgotten. With no call under way (so no
        answer can still change it), the count sent is this process's own: a call whose
        answer was lost is set right here."""
        if not (self._held or self._unsure):
            return
        exact = self._asking == 0
        failures = self._failures
        try:
            await self._heartbeat(
                [self._key], [self._field, self._held if exact else -1, self._ttl_ms]
            )
        except Exception as error:
            logger.debug("could not keep the reserve slots alive: %r", error)
            return
        if exact and failures == self._failures:
            self._unsure = False

    async def run_background(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            await self.heartbeat()

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=1.0)
        with contextlib.suppress(Exception):
            await self._redis.hdel(self._key, self._field, f"{self._field}:t")
        await self._redis.aclose()


def open_reserve(
    redis_url: str | None, prefix: str, timeout_s: float, workers: int, worker_index: int
) -> ReservePool:
    """The pool the deployment's processes can share: Redis's when there is one, else the
    instance's file when gateway/workers.py made one, else this process's own."""
    if redis_url:
        return RedisReserve(redis_url, prefix, timeout_s)
    path = os.environ.get(RESERVE_FILE_ENV)
    if path and workers > 1:
        return FileReserve(path, worker_index, workers)
    return LocalReserve()
