"""The fair queue's rules, driven by real asyncio tasks that hold slots until told to finish."""

from __future__ import annotations

import asyncio

import pydantic
import pytest

from bench.fairness import run_in_virtual_time
from gateway.core.errors import GatewayError
from gateway.isolation.fair_queue import FairQueue, reserved_slots
from gateway.settings import FairQueueSettings
from tests.gateway.isolation.conftest import sample


class Call:
    """One request: enters a slot of `tenant`, records that it got in, holds until `finish`."""

    def __init__(
        self, queue: FairQueue, tenant: str, admitted: list[str], weight: float = 1.0
    ) -> None:
        self.tenant = tenant
        self.finish = asyncio.Event()
        self.task = asyncio.create_task(self._run(queue, weight, admitted))

    async def _run(self, queue: FairQueue, weight: float, admitted: list[str]) -> None:
        async with queue.slot(self.tenant, weight):
            admitted.append(self.tenant)
            await self.finish.wait()

    async def done(self) -> None:
        self.finish.set()
        await self.task


# What a tenant holds is what it holds now: the rules before averaging (tested apart below).
INSTANT = 1e-9


async def settle() -> None:
    """Let every runnable task take its next steps."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_below_the_budget_requests_enter_at_once() -> None:
    queue, admitted = FairQueue(max_in_flight=2, queue_timeout_s=5), []
    calls = [Call(queue, "a", admitted), Call(queue, "b", admitted)]
    await settle()
    assert admitted == ["a", "b"] and queue.in_flight == 2 and queue.queued() == 0
    for call in calls:
        await call.done()
    assert queue.in_flight == 0


async def test_a_quiet_tenant_overtakes_a_noisy_tenants_backlog() -> None:
    # without a reserve, so that every freed slot is handed on (the reserve is tested below)
    queue, admitted = FairQueue(max_in_flight=2, queue_timeout_s=5, reserved_share=0), []
    noisy = [Call(queue, "noisy", admitted) for _ in range(5)]
    await settle()
    quiet = Call(queue, "quiet", admitted)
    await settle()
    assert admitted == ["noisy", "noisy"] and queue.queued("noisy") == 3
    await noisy[0].done()
    await settle()
    assert admitted[2] == "quiet"  # before the three noisy requests that queued earlier
    await quiet.done()
    await settle()
    assert admitted[3] == "noisy"  # nobody else waits: the noisy tenant gets the slot
    for call in noisy[1:]:
        await call.done()
    assert queue.in_flight == 0 and queue.queued() == 0


async def test_freed_slots_are_shared_by_weight() -> None:
    queue, admitted = FairQueue(max_in_flight=6, queue_timeout_s=5, reserved_share=0), []
    blockers = [Call(queue, "blocker", admitted) for _ in range(6)]
    await settle()
    heavy = [Call(queue, "heavy", admitted, weight=2.0) for _ in range(8)]
    light = [Call(queue, "light", admitted, weight=1.0) for _ in range(8)]
    await settle()
    for blocker in blockers:
        await blocker.done()
    await settle()
    assert admitted[6:].count("heavy") == 4 and admitted[6:].count("light") == 2
    # one of each finishes (each lane admits in arrival order, so the first of each):
    # the freed slots go back by weight, so the in-flight shares stay 4 to 2
    await light[0].done()
    await heavy[0].done()
    await settle()
    assert admitted[6:].count("heavy") == 4 + 1 and admitted[6:].count("light") == 2 + 1
    for call in heavy[1:] + light[1:]:
        call.finish.set()
    await asyncio.gather(*(call.task for call in heavy + light))
    assert queue.in_flight == 0


async def test_with_one_slot_tenants_take_turns_by_weight() -> None:
    queue, admitted = FairQueue(max_in_flight=1, queue_timeout_s=5), []
    blocker = Call(queue, "blocker", admitted)
    await settle()
    calls = {
        tenant: [Call(queue, tenant, admitted, weight) for _ in range(6)]
        for tenant, weight in (("heavy", 2.0), ("light", 1.0))
    }
    await settle()
    await blocker.done()
    for _ in range(6):  # finish whoever holds the slot, six times over
        await settle()
        holder = next(call for call in calls[admitted[-1]] if not call.finish.is_set())
        await holder.done()
    assert admitted[1:7].count("heavy") == 4 and admitted[1:7].count("light") == 2
    for call in calls["heavy"] + calls["light"]:
        call.finish.set()
    await asyncio.gather(*(call.task for call in calls["heavy"] + calls["light"]))
    assert queue.in_flight == 0


async def test_a_lone_tenant_fills_the_whole_budget() -> None:
    queue, admitted = FairQueue(max_in_flight=4, queue_timeout_s=5), []
    assert reserved_slots(4, 0.0625) == 1
    calls = [Call(queue, "a", admitted) for _ in range(6)]
    await settle()
    assert admitted == ["a"] * 4 and queue.in_flight == 4 and queue.queued("a") == 2
    await calls[0].done()
    await settle()
    assert len(admitted) == 5 and queue.in_flight == 4  # the freed reserve slot is handed on
    for call in calls[1:]:
        await call.done()
    assert queue.in_flight == 0


async def recently_active(queue: FairQueue, tenant: str) -> None:
    """One request of `tenant`, already finished: the tenant is active for the window."""
    async with queue.slot(tenant):
        pass


async def test_the_reserve_is_kept_for_a_tenant_below_its_share() -> None:
    queue, admitted = FairQueue(max_in_flight=4, queue_timeout_s=5, holding_window_s=INSTANT), []
    await recently_active(queue, "quiet")
    noisy = [Call(queue, "noisy", admitted) for _ in range(5)]
    await settle()
    # two active tenants share 4 slots, 2 each: the noisy one, holding 3, cannot take the last
    assert admitted == ["noisy"] * 3 and queue.in_flight == 3 and queue.queued("noisy") == 2
    quiet = Call(queue, "quiet", admitted)
    await settle()
    assert admitted[3] == "quiet" and queue.in_flight == 4  # at once, past the noisy waiters
    # the slot it frees is inside the reserve: it stays free rather than go to a noisy waiter
    await quiet.done()
    await settle()
    assert len(admitted) == 4 and queue.in_flight == 3 and queue.queued("noisy") == 2
    # below the reserve, freed slots go to over-share waiters as ever
    await noisy[0].done()
    await settle()
    assert admitted[4] == "noisy" and queue.in_flight == 3 and queue.queued("noisy") == 1
    for call in noisy[1:]:
        await call.done()
    assert queue.in_flight == 0


async def test_a_newcomer_below_its_share_enters_the_reserve_at_once() -> None:
    queue, admitted = FairQueue(max_in_flight=4, queue_timeout_s=5, holding_window_s=INSTANT), []
    await recently_active(queue, "quiet")
    noisy = [Call(queue, "noisy", admitted) for _ in range(5)]
    await settle()
    newcomer = Call(queue, "newcomer", admitted)
    await settle()
    assert admitted[3] == "newcomer" and queue.in_flight == 4 and queue.queued("noisy") == 2
    for call in [newcomer, *noisy]:
        await call.done()
    assert queue.in_flight == 0


async def test_over_share_waiters_get_the_reserve_once_the_other_tenant_goes_idle() -> None:
    queue = FairQueue(4, queue_timeout_s=5, active_window_s=0.1, holding_window_s=INSTANT)
    admitted: list[str] = []
    await recently_active(queue, "quiet")
    noisy = [Call(queue, "noisy", admitted) for _ in range(6)]
    await settle()
    await noisy[0].done()
    await settle()
    assert len(admitted) == 4 and queue.in_flight == 3  # "quiet" is still active
    await asyncio.sleep(0.15)  # now it is not: "noisy" alone, its share is the whole budget
    await noisy[1].done()
    await settle()
    assert len(admitted) == 6 and queue.in_flight == 4 and queue.queued() == 0
    for call in noisy[2:]:
        await call.done()
    assert queue.in_flight == 0


@pytest.mark.parametrize(("budget", "reserve"), [(1, 0), (2, 1), (64, 4)])
def test_the_reserve_is_a_share_of_the_budget_rounded_up_and_never_all(
    budget: int, reserve: int
) -> None:
    assert reserved_slots(budget, FairQueueSettings().reserved_share) == reserve
    assert reserved_slots(budget, 0) == 0
    assert reserved_slots(budget, 0.99) == budget - 1


@pytest.mark.parametrize(("status", "error_type"), [(429, "requests"), (503, "server_error")])
async def test_a_request_that_waits_too_long_is_refused(status: int, error_type: str) -> None:
    queue, admitted = FairQueue(1, queue_timeout_s=0.05, on_timeout=status, retry_after_s=3), []
    holder = Call(queue, "a", admitted)
    await settle()
    timeouts = sample("vllm_gateway_fair_queue_timeouts_total", tenant="b")
    with pytest.raises(GatewayError) as refused:
        async with queue.slot("b"):
            pytest.fail("entered a full queue")
    error = refused.value
    assert (error.status, error.type, error.code) == (status, error_type, "queue_timeout")
    assert error.headers == {"retry-after": "3"}
    assert sample("vllm_gateway_fair_queue_timeouts_total", tenant="b") == timeouts + 1
    assert queue.queued() == 0
    await holder.done()
    assert queue.in_flight == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_leaks_no_slot() -> None:
    queue, admitted = FairQueue(1, queue_timeout_s=5), []
    holder = Call(queue, "a", admitted)
    await settle()
    gone = Call(queue, "b", admitted)
    after = Call(queue, "c", admitted)
    await settle()
    gone.task.cancel()
    await settle()
    assert queue.queued("b") == 0 and queue.queued("c") == 1
    await holder.done()
    await settle()
    assert admitted == ["a", "c"]
    await after.done()
    assert queue.in_flight == 0


async def test_a_slot_granted_as_its_waiter_is_cancelled_goes_to_the_next() -> None:
    queue, admitted = FairQueue(1, queue_timeout_s=5), []
    holder = queue.slot("a")
    await holder.__aenter__()
    cancelled = Call(queue, "b", admitted)
    next_in_line = Call(queue, "c", admitted)
    await settle()
    await holder.__aexit__(None, None, None)  # hands the slot to "b" ...
    cancelled.task.cancel()  # ... which is cancelled before it can run
    await settle()
    assert cancelled.task.cancelled()
    assert admitted == ["c"] and queue.in_flight == 1
    await next_in_line.done()
    assert queue.in_flight == 0


async def test_queue_depth_and_wait_are_reported_per_tenant() -> None:
    queue, admitted = FairQueue(1, queue_timeout_s=5), []
    holder = Call(queue, "metrics-a", admitted)
    waits = sample("vllm_gateway_fair_queue_wait_seconds_count", tenant="metrics-b")
    waiting = Call(queue, "metrics-b", admitted)
    await settle()
    assert sample("vllm_gateway_fair_queue_depth", tenant="metrics-b") == 1
    await holder.done()
    await waiting.done()
    assert sample("vllm_gateway_fair_queue_depth", tenant="metrics-b") == 0
    assert sample("vllm_gateway_fair_queue_wait_seconds_count", tenant="metrics-b") == waits + 1
    # requests that never queued are not counted as waits
    assert sample("vllm_gateway_fair_queue_wait_seconds_count", tenant="metrics-a") == 0


def test_budget_and_weights_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairQueue(0, queue_timeout_s=1)
    with pytest.raises(ValueError):
        FairQueue(1, queue_timeout_s=1).slot("a", weight=0)


@pytest.mark.parametrize(
    "fields",
    [
        {"reserved_share": -0.1},
        {"reserved_share": 1.0},
        {"active_window_s": 0},
        {"holding_window_s": 0},
    ],
)
def test_reserve_settings_out_of_range_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        FairQueueSettings(**fields)
    with pytest.raises(ValueError):
        FairQueue(4, queue_timeout_s=1, **fields)


async def test_the_settings_size_the_reserve() -> None:
    settings = FairQueueSettings(max_in_flight=4, reserved_share=0.5, holding_window_s=INSTANT)
    queue, admitted = FairQueue.from_settings(settings), []
    await recently_active(queue, "quiet")
    noisy = [Call(queue, "noisy", admitted) for _ in range(4)]
    await settle()
    assert queue.in_flight == 2 and queue.queued("noisy") == 2  # two open, two reserved
    for call in noisy:
        call.finish.set()
    await asyncio.gather(*(call.task for call in noisy))
    assert queue.in_flight == 0


async def test_a_grown_budget_lets_waiters_in_and_a_shrunk_one_starts_nothing() -> None:
    queue = FairQueue(12, queue_timeout_s=10, reserved_share=0)
    queue.divide(3, 0)  # the deployment's 12 over 3 processes: 4 here
    admitted: list[str] = []
    calls = [Call(queue, "a", admitted) for _ in range(6)]
    await settle()
    assert queue.in_flight == 4 and queue.queued() == 2
    queue.divide(2, 0)  # another process left: its part is shared by the two left
    await settle()
    assert queue.in_flight == 6 and queue.queued() == 0
    queue.divide(6, 0)  # four more joined: nothing new starts until below two
    late = Call(queue, "a", admitted)
    for call in calls[:4]:
        await call.done()
    await settle()
    assert queue.in_flight == 2 and queue.queued() == 1
    await calls[4].done()
    await settle()
    assert queue.in_flight == 2 and queue.queued() == 0  # `late` took the freed slot
    for call in [calls[5], late]:
        await call.done()


@pytest.mark.parametrize(("holding_window_s", "quiet_admitted"), [(2.0, 5), (INSTANT, 4)])
def test_a_light_tenants_burst_is_not_a_heavy_tenant(
    holding_window_s: float, quiet_admitted: int
) -> None:
    """Three active tenants share 12 slots, 4 each; 6 are the reserve. A heavy tenant that
    has held 12 for seconds gets none of the reserve; a light tenant's burst of 5, one over
    its share at that moment, all enter at once: it has held nothing on average. Judged by
    what it holds at the moment, the fifth would wait. (In virtual time: seconds pass at once.)"""

    async def scenario() -> tuple[int, int, int]:
        queue = FairQueue(12, 60, reserved_share=0.5, holding_window_s=holding_window_s)
        for tenant in ("quiet", "other"):
            await recently_active(queue, tenant)
        admitted: list[str] = []
        noisy = [Call(queue, "noisy", admitted) for _ in range(20)]
        await asyncio.sleep(5)  # new, it took the reserve too; by now it is heavy
        for call in noisy[:6]:  # its reserve slots go back, not to its own waiters
            await call.done()
        await settle()
        held = queue.in_flight
        quiet = []
        for _ in range(5):  # within 5 ms
            quiet.append(Call(queue, "quiet", admitted))
            await asyncio.sleep(0.001)
        result = held, queue.queued("noisy"), admitted.count("quiet")
        for call in [*noisy, *quiet]:
            call.finish.set()
        await asyncio.gather(*(call.task for call in [*noisy, *quiet]))
        return result

    assert run_in_virtual_time(scenario()) == (6, 8, quiet_admitted)


def test_a_waiter_below_its_share_gets_a_freed_reserve_slot_behind_one_over_it() -> None:
    """A budget of 12, 6 of them the reserve. The noisy tenant held all 12 for seconds; now
    it holds none, so its waiters come first in the fair order, but on average it is far over
    its share (3 of 12, by weight 1 of 4). A reserve slot that frees goes to the quiet
    tenant's waiter (weight 3, its share 9, on average it has held little), not back to the
    reserve while that waiter waits. (In virtual time.)"""

    async def scenario() -> tuple[int, int]:
        queue = FairQueue(12, 60, reserved_share=0.5, holding_window_s=2.0)
        await recently_active(queue, "quiet")
        admitted: list[str] = []
        noisy = [Call(queue, "noisy", admitted) for _ in range(12)]
        await asyncio.sleep(5)  # new, it took the reserve too; by now it is heavy
        for call in noisy:
            await call.done()
        quiet = [Call(queue, "quiet", admitted, weight=3) for _ in range(12)]
        await settle()  # the 6 open slots and the 6 of the reserve
        noisy = [Call(queue, "noisy", admitted) for _ in range(3)]
        waiting = Call(queue, "quiet", admitted, weight=3)
        await settle()
        before = admitted.count("quiet")
        await quiet[-1].done()  # it held a reserve slot
        await settle()
        result = before, admitted.count("quiet")
        for call in [*quiet, *noisy, waiting]:
            call.finish.set()
        await asyncio.gather(*(call.task for call in [*quiet, *noisy, waiting]))
        return result

    assert run_in_virtual_time(scenario()) == (12, 13)
