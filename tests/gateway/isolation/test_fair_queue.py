"""The fair queue's rules, driven by real asyncio tasks that hold slots until told to finish."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import GatewayError
from gateway.isolation.fair_queue import FairQueue
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
    queue, admitted = FairQueue(max_in_flight=2, queue_timeout_s=5), []
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
    queue, admitted = FairQueue(max_in_flight=6, queue_timeout_s=5), []
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
