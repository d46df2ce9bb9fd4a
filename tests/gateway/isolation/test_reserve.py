"""The fair queue's reserve pools: one reserve lent to several holders (gateway processes)
never lends more than its capacity, takes slots back, and forgets holders that died."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.isolation.fair_queue import FairQueue, pooled_slots
from gateway.isolation.reserve import FileReserve, LocalReserve, RedisReserve, ReservePool
from tests.fixtures.redis import delete_prefixed_keys
from tests.fixtures.redis_topologies import TOPOLOGIES, topology_url
from tests.gateway.isolation.test_fair_queue import INSTANT, Call, recently_active, settle


async def borrowed(pool: ReservePool, slots: int) -> int:
    """How many of `slots` borrows `pool` granted."""
    return sum([await pool.borrow() for _ in range(slots)])


async def borrows_soon(pool: ReservePool) -> bool:
    """Whether a borrow succeeds once the give-backs sent in the background have landed."""
    for _ in range(100):
        if await pool.borrow():
            return True
        await asyncio.sleep(0.02)
    return False


@pytest_asyncio.fixture(loop_scope="function", params=["file", *TOPOLOGIES])
async def holders(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., ReservePool]]:
    """Makes the holders of one shared pool, each as a gateway process would open it."""
    made: list[ReservePool] = []
    prefix = f"test-{uuid.uuid4().hex}:"
    path = tmp_path / "reserve"
    path.touch()
    index = iter(range(8))

    def holder(**options: float) -> ReservePool:
        pool: ReservePool
        if request.param == "file":
            pool = FileReserve(str(path), next(index), 8)
        else:
            pool = RedisReserve(topology_url(request, request.param), prefix, 2.0, **options)
        pool.set_capacity(3)
        made.append(pool)
        return pool

    yield holder
    for pool in made:
        close = getattr(pool, "close", None)
        if close is not None:
            await close()
    if request.param != "file":
        await delete_prefixed_keys(topology_url(request, request.param), prefix)


async def test_holders_together_never_take_more_than_the_capacity(
    holders: Callable[..., ReservePool],
) -> None:
    first, second = holders(), holders()
    assert first.shared and second.shared
    assert await borrowed(first, 2) == 2
    assert await borrowed(second, 2) == 1  # one left for the two of them
    first.give_back()
    assert await borrows_soon(second)
    assert not await first.borrow()


async def test_a_closed_holder_gives_its_slots_back(holders: Callable[..., ReservePool]) -> None:
    first, second = holders(), holders()
    assert await borrowed(first, 3) == 3
    assert not await second.borrow()
    close = getattr(first, "close")  # noqa: B009 -- both shared pools have one
    await close()
    assert await borrowed(second, 3) == 3


async def test_a_worker_started_again_does_not_inherit_its_predecessors_slots(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reserve"
    path.touch()
    killed, other = FileReserve(str(path), 0, 2), FileReserve(str(path), 1, 2)
    for pool in (killed, other):
        pool.set_capacity(3)
    assert await borrowed(killed, 3) == 3
    # the worker died with its requests (no close); the supervisor starts index 0 again
    again = FileReserve(str(path), 0, 2)
    again.set_capacity(3)
    assert await borrowed(other, 3) == 3
    await again.close()
    await other.close()


async def test_a_silent_redis_holder_is_forgotten_and_a_live_one_kept(
    redis_url: str,
) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    silent, live, other = (RedisReserve(redis_url, prefix, 2.0, holder_ttl_s=0.3) for _ in "abc")
    try:
        for pool in (silent, live, other):
            pool.set_capacity(2)
        assert await silent.borrow() and await live.borrow()
        for _ in range(6):  # 0.6 s: `silent` says nothing, `live` beats as its loop would
            await live.heartbeat()
            await asyncio.sleep(0.1)
        assert await other.borrow()  # the silent holder's slot, taken back
        assert not await other.borrow()  # the live holder's is still held
    finally:
        for pool in (silent, live, other):
            await pool.close()
        await delete_prefixed_keys(redis_url, prefix)


async def test_after_redis_lost_the_pool_a_holders_heartbeat_restores_its_slots(
    redis_url: str,
) -> None:
    """Redis restarted empty (it keeps nothing on disk here): the slots a process still holds
    are counted again from its next heartbeat, so the others cannot take them twice over."""
    prefix = f"test-{uuid.uuid4().hex}:"
    holder, other = (RedisReserve(redis_url, prefix, 2.0) for _ in "ab")
    try:
        for pool in (holder, other):
            pool.set_capacity(3)
        assert await borrowed(holder, 2) == 2
        await delete_prefixed_keys(redis_url, prefix)
        await holder.heartbeat()
        assert await borrowed(other, 3) == 1
    finally:
        for pool in (holder, other):
            await pool.close()
        await delete_prefixed_keys(redis_url, prefix)


async def test_an_unreachable_redis_lends_nothing_and_raises_nothing() -> None:
    pool = RedisReserve("redis://127.0.0.1:1", "test:", 0.2)
    pool.set_capacity(4)
    try:
        assert not await pool.borrow()
        await pool.heartbeat()  # says what it holds when Redis answers again; no error now
    finally:
        await pool.close()


async def test_a_hanging_redis_costs_one_borrow_its_timeout_then_none_is_tried() -> None:
    """A server that takes the connection and never answers: the first borrow gives up after
    its timeout, and the borrows that follow within the second do not ask it at all."""
    received = bytearray()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = RedisReserve(f"redis://127.0.0.1:{port}", "test:", 0.1)
    pool.set_capacity(4)
    try:
        assert not await pool.borrow()
        asked = len(received)
        assert asked > 0
        assert not await pool.borrow() and not await pool.borrow()
        assert len(received) == asked
    finally:
        server.close()
        await pool.close()


def test_a_local_reserve_is_this_processs_alone() -> None:
    pool = LocalReserve(2)
    assert not pool.shared
    assert asyncio.run(borrowed(pool, 3)) == 2


async def test_two_processes_lend_one_reserve_where_the_quiet_requests_land(
    tmp_path: Path,
) -> None:
    """A deployment budget of 8 with a reserve of 2 over two processes: each keeps 3 open
    slots, and the reserve's 2 go to whichever process the quiet requests reach. Divided, each
    process would keep 1, and the second quiet request would wait for a noisy one to end."""
    path = tmp_path / "reserve"
    path.touch()
    processes = [
        FairQueue(
            8,
            5,
            reserved_share=0.25,
            holding_window_s=INSTANT,
            reserve_per_extra_process=0,
            reserve=FileReserve(str(path), rank, 2),
        )
        for rank in range(2)
    ]
    for rank, queue in enumerate(processes):
        queue.divide(2, rank)
        await recently_active(queue, "quiet-1")
        await recently_active(queue, "quiet-2")
    admitted: list[str] = []
    noisy = [Call(processes[i % 2], "noisy", admitted) for i in range(10)]
    await settle()
    assert [queue.in_flight for queue in processes] == [3, 3]  # the open slots, both full
    quiet = [Call(processes[0], tenant, admitted) for tenant in ("quiet-1", "quiet-2")]
    await settle()
    assert admitted.count("quiet-1") == admitted.count("quiet-2") == 1  # at once, both
    assert [queue.in_flight for queue in processes] == [5, 3]  # 8: the budget, no more
    late = Call(processes[1], "quiet-1", admitted)
    await settle()
    assert admitted.count("quiet-1") == 1  # the reserve is lent out: it waits
    await quiet[0].done()  # its reserve slot goes back, and process 1 takes it for `late`,
    for _ in range(100):  # with no request of its own ending
        if admitted.count("quiet-1") == 2:
            break
        await asyncio.sleep(0.01)
    assert admitted.count("quiet-1") == 2
    assert [queue.in_flight for queue in processes] == [4, 4]
    for call in [*noisy, quiet[1], late]:
        call.finish.set()
    await asyncio.gather(*(call.task for call in [*noisy, *quiet, late]))
    assert [queue.in_flight for queue in processes] == [0, 0]


async def test_the_lent_reserve_grows_by_a_slot_per_process_beyond_the_first(
    tmp_path: Path,
) -> None:
    """A budget of 16 with a reserve of 4 over four processes: the pool lends 7 (4 and one for
    each of the 3 other processes, whose lent slots come back at their own, rarer, releases),
    taken from the open slots, so the budget stays 16."""
    path = tmp_path / "reserve"
    path.touch()
    processes = [
        FairQueue(
            16,
            5,
            reserved_share=0.25,
            holding_window_s=INSTANT,
            reserve=FileReserve(str(path), rank, 4),
        )
        for rank in range(4)
    ]
    for rank, queue in enumerate(processes):
        queue.divide(4, rank)
        await recently_active(queue, "quiet")
    admitted: list[str] = []
    noisy = [Call(processes[i % 4], "noisy", admitted) for i in range(20)]
    await settle()
    assert [queue.in_flight for queue in processes] == [2, 2, 2, 3]  # 9 open slots, full
    quiet = [Call(processes[i % 4], "quiet", admitted) for i in range(8)]
    await settle()
    assert admitted.count("quiet") == 7  # at once: the 8th finds the pool lent out
    assert sum(queue.in_flight for queue in processes) == 16
    for call in [*noisy, *quiet]:
        call.finish.set()
    await asyncio.gather(*(call.task for call in [*noisy, *quiet]))
    assert [queue.in_flight for queue in processes] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("budget", "reserved", "processes", "pooled"),
    [(64, 4, 1, 4), (64, 4, 4, 7), (64, 0, 4, 0), (8, 2, 4, 4), (8, 2, 8, 2)],
)
def test_the_grown_reserve_leaves_each_process_an_open_slot(
    budget: int, reserved: int, processes: int, pooled: int
) -> None:
    assert pooled_slots(budget, reserved, processes, 1) == pooled
