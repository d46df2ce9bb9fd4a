"""Weighted fair sharing of vLLM's capacity between tenants, only while it is full.

vLLM serves its waiting queue first come, first served (or by priority), so one tenant that
sends ten times the traffic of the others fills that queue and everyone waits behind it. The
gateway instead keeps at most `max_in_flight` requests at vLLM and holds the rest in one
queue per tenant. When a slot frees, it goes to the waiting tenant with the fewest requests
in flight per unit of weight: a tenant using less than its share of the budget is served
next. Sharing in-flight slots rather than request counts is deliberate: a slot held for a long
generation is what vLLM's batch actually spends. Between tenants holding equal shares (with
a small budget, often all of them at zero), start-time fair queuing decides: each tenant's
virtual clock advances by 1/weight per request it starts, and the lowest clock goes first;
a tenant back from idle starts at the current virtual time, so idleness banks no credit.

Handing freed slots on in that order still makes a quiet tenant wait for the next slot to
free once a noisy one has filled the budget. So the last `reserved_share` of the budget is a
reserve, kept for tenants below their fair share: `max_in_flight * weight / (the weights of
all active tenants)`, where a tenant is active while it has requests in flight or queued, or
had one within `active_window_s`; what a tenant holds is its slots averaged over about
`holding_window_s` (see `_under_share`). A tenant below its share takes a reserve slot at once, even
past waiting over-share tenants; a reserve slot freed goes to the next waiter below its share,
or back to the reserve, never to an over-share waiter. Slots are alike: while the process
holds reserve slots, a slot that frees is returned to the reserve, so over-share waiters get
slots only below it. The cost is a few slots left idle while several tenants are active. A
lone tenant's share is the whole budget, so it still gets every slot, and once the others
fall out of the window a busy tenant gets the reserve too.

With several gateway processes the budget is the deployment's: each process keeps its part
of the open slots, and the reserve is kept once, in a pool they all borrow from
(gateway/isolation/reserve.py), so that it absorbs a burst wherever the burst lands. A lent
slot comes back at its borrower's next release, which with N processes comes N times later
than one process's: the same reserve would be lent out N times as long, and found empty far
more often. So the pool grows by `reserve_per_extra_process` slots per process beyond the
first (taken from the open slots: the budget stays the deployment's); one slot each keeps the
pool's chance of being found empty about what one process has, by Erlang's loss formula for
the default reserve at the load it is for (bench/results/fairness.md measures it).

Below the reserve, entering a slot is a few comparisons and additions: no lock, no future,
no timer. A request that waits longer than `queue_timeout_s` is refused with 429 (with
Retry-After) or 503, as configured.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from types import TracebackType

from gateway.core.errors import GatewayError, RateLimitError, ServiceUnavailable
from gateway.isolation.reserve import LocalReserve, ReservePool
from gateway.observability import metrics, tracing
from gateway.peers import part
from gateway.settings import FairQueueSettings

# How soon a process asks the shared reserve again for a waiter below its share, at first
# and at most (doubling in between): an under-share waiter is rare, and it stops once served.
LEND_RETRY_S = (0.005, 0.08)


class FairQueue:
    def __init__(
        self,
        max_in_flight: int,
        queue_timeout_s: float,
        on_timeout: int = 429,
        retry_after_s: int = 1,
        *,
        reserved_share: float = 0.0625,
        active_window_s: float = 10.0,
        holding_window_s: float = 2.0,
        reserve_per_extra_process: int = 1,
        reserve: ReservePool | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if active_window_s <= 0 or holding_window_s <= 0:
            raise ValueError("active_window_s and holding_window_s must be positive")
        self._holding_window_s = holding_window_s
        self._budget = max_in_flight  # the deployment's
        self._reserved_share = reserved_share
        self._reserved = reserved_slots(max_in_flight, reserved_share)
        if reserve_per_extra_process < 0:
            raise ValueError("reserve_per_extra_process must not be negative")
        self._per_extra_process = reserve_per_extra_process
        self._pool: ReservePool = reserve or LocalReserve()
        self._max = self._open = 0
        self._window_s = active_window_s
        self._timeout_s = queue_timeout_s
        self._on_timeout = on_timeout
        self._retry_after_s = retry_after_s
        self._in_flight = 0  # of the open slots
        self._borrowed = 0  # reserve slots this process holds
        self._lender: asyncio.Task[None] | None = None
        self._virtual_now = 0.0  # the virtual start time of the latest request let in
        self._lanes: dict[str, TenantLane] = {}
        # Lanes with waiters, in the order they started waiting (ties go to the earliest).
        self._backlogged: dict[str, TenantLane] = {}
        self.divide(1, 0)

    @classmethod
    def from_settings(
        cls, settings: FairQueueSettings, reserve: ReservePool | None = None
    ) -> FairQueue:
        return cls(
            settings.max_in_flight,
            settings.queue_timeout_s,
            settings.on_timeout,
            settings.retry_after_s,
            reserved_share=settings.reserved_share,
            active_window_s=settings.active_window_s,
            holding_window_s=settings.holding_window_s,
            reserve_per_extra_process=settings.reserve_per_extra_process,
            reserve=reserve,
        )

    def slot(self, tenant: str, weight: float = 1.0) -> TenantLane:
        """`async with queue.slot(tenant, weight):` around the upstream call and relay.

        `tenant` is the fairness key and the metrics label: pass the tenant's (unique) name.
        """
        lane = self._lanes.get(tenant)
        if lane is None:
            lane = self._lanes[tenant] = TenantLane(self, tenant, weight)
        elif lane.weight != weight:
            lane.reweigh(weight)  # a changed tier applies from the next request on
        return lane

    @property
    def in_flight(self) -> int:
        return self._in_flight + self._borrowed

    def divide(self, processes: int, rank: int) -> None:
        """This process's part of the deployment's budget, `processes` gateway processes
        sharing it and this one `rank` among them (gateway/peers.py; at least one slot each).

        With a shared pool the open slots are divided and the reserve, grown by the processes
        beyond the first, is the pool's; else each process keeps a reserve of its own budget.
        Growing lets waiters in at once; shrinking starts no request until the requests in
        flight are below the new budget.
        """
        self._max = max(1, part(self._budget, processes, rank))
        metrics.fair_queue_budget(self._max)
        if self._pool.shared:
            pooled = pooled_slots(self._budget, self._reserved, processes, self._per_extra_process)
            self._pool.set_capacity(pooled)
            self._open = max(1, self._max - part(pooled, processes, rank))
        else:
            reserved = reserved_slots(self._max, self._reserved_share)
            self._pool.set_capacity(reserved)
            self._open = self._max - reserved
        while self._borrowed and self._in_flight < self._open:  # alike: keep the open one
            self._borrowed -= 1
            self._in_flight += 1
            self._pool.give_back()
        self._grant()

    def queued(self, tenant: str | None = None) -> int:
        """Requests waiting for a slot: one tenant's, or everyone's."""
        if tenant is not None:
            lane = self._lanes.get(tenant)
            return len(lane.waiters) if lane else 0
        return sum(len(lane.waiters) for lane in self._backlogged.values())

    def _enter_at_once(self, lane: TenantLane) -> bool:
        # A free open slot is taken at once only if nobody waits: a waiter owns the next one.
        if self._in_flight < self._open and not self._backlogged:
            self._in_flight += 1
            self._admit(lane)
            return True
        return False

    async def _enter_reserve(self, lane: TenantLane) -> bool:
        """A tenant below its share may take a reserve slot past other tenants' waiters
        (never past its own: they go first, at the next release)."""
        if lane.waiters or not self._under_share(lane) or not await self._pool.borrow():
            return False
        self._borrowed += 1
        self._admit(lane)
        return True

    def _under_share(self, lane: TenantLane) -> bool:
        """Whether `lane` has held fewer slots than its weight's part of the budget, on
        average over about `holding_window_s`.

        The part is taken among the tenants active now (the lane itself always counts), so it
        grows back to the whole budget as the others go idle. Averaged, because a process
        sees only its part of each tenant's requests: a light tenant's few requests landing
        together on one process would otherwise count as a heavy tenant's (with 4 processes,
        every 12th request of a quiet tenant in bench/fairness.py), while a heavy tenant
        counts as heavy within about the window. Only asked while the open slots are full,
        so walking every tenant here costs the fast path nothing.
        """
        now = time.monotonic()
        return self._below(lane, now, self._active_weight(now, lane))

    def _active_weight(self, now: float, lane: TenantLane | None = None) -> float:
        """The weights of the tenants active now; `lane`'s always counts (a lane with
        waiters is active anyway)."""
        return sum(
            other.weight
            for other in self._lanes.values()
            if other is lane
            or other.in_flight
            or other.waiters
            or now - other.last_active < self._window_s
        )

    def _below(self, lane: TenantLane, now: float, active_weight: float) -> bool:
        return self._holding(lane, now) * active_weight < self._max * lane.weight

    def _holding(self, lane: TenantLane, now: float) -> float:
        """The slots `lane` held, averaged with exponentially less weight further back."""
        kept = math.exp((lane.held_at - now) / self._holding_window_s)
        return kept * lane.held + (1 - kept) * lane.in_flight

    def _note_holding(self, lane: TenantLane, now: float) -> None:
        lane.held, lane.held_at = self._holding(lane, now), now

    def _admit(self, lane: TenantLane) -> None:
        self._note_holding(lane, time.monotonic())
        lane.in_flight += 1
        start = lane.virtual if lane.virtual > self._virtual_now else self._virtual_now
        self._virtual_now = start
        lane.virtual = start + lane.step

    def _next_lane(self, lane: TenantLane) -> tuple[float, float]:
        return lane.in_flight / lane.weight, max(lane.virtual, self._virtual_now)

    async def _wait(self, lane: TenantLane) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if not lane.waiters:
            self._backlogged[lane.tenant] = lane
        lane.waiters.append(waiter)
        timer = loop.call_later(self._timeout_s, self._expire, lane, waiter)
        if self._pool.shared:  # the reserve was lent out elsewhere: ask until it comes back
            self._start_lending()
        started = loop.time()
        metrics.fair_queue_entered(lane.tenant)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release(lane)  # the slot came just as the client went away
            else:
                self._forget(lane, waiter)
            raise
        finally:
            timer.cancel()
            lane.last_active = time.monotonic()  # a timed-out or cancelled waiter left now
            expired = waiter.done() and not waiter.cancelled() and not waiter.result()
            metrics.fair_queue_left(lane.tenant, loop.time() - started, expired)
        if not granted:
            raise self._timeout_error()

    def _expire(self, lane: TenantLane, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            self._forget(lane, waiter)
            waiter.set_result(False)

    def _forget(self, lane: TenantLane, waiter: asyncio.Future[bool]) -> None:
        """Take a waiter out of its lane, unless a release already skipped past it."""
        try:
            lane.waiters.remove(waiter)
        except ValueError:
            return
        if not lane.waiters:
            del self._backlogged[lane.tenant]

    def _release(self, lane: TenantLane) -> None:
        """Hand the freed slot on (see `_grant`). While the process holds reserve slots the
        freed one counts as a reserve slot: it goes to the next waiter below its share, if
        there is one, or back to the reserve."""
        lane.last_active = now = time.monotonic()
        self._note_holding(lane, now)
        lane.in_flight -= 1
        if not self._borrowed:
            self._in_flight -= 1
            self._grant()
            return
        if not self._hand_on(self._next_under_share()):
            self._borrowed -= 1
            self._pool.give_back()

    def _grant(self) -> None:
        """Let waiters into the free open slots, in `_next_lane` order; then waiters below
        their share into the reserve (once the others have gone idle, a busy tenant's share
        has grown and it takes the reserve too)."""
        while self._backlogged and self._in_flight < self._open:
            if self._hand_on(min(self._backlogged.values(), key=self._next_lane)):
                self._in_flight += 1
        self._start_lending()

    def _start_lending(self) -> None:
        if self._lender is None and self._next_under_share() is not None:
            self._lender = asyncio.get_running_loop().create_task(self._lend())

    async def _lend(self) -> None:
        """Borrow reserve slots for the waiters below their share, one at a time. From a
        shared pool, ask again now and then while such waiters remain: the other processes
        give slots back, and nothing tells this one."""
        pause = LEND_RETRY_S[0]
        try:
            while self._next_under_share() is not None:
                if await self._pool.borrow():
                    pause = LEND_RETRY_S[0]
                    if self._hand_on(self._next_under_share()):
                        self._borrowed += 1
                        continue
                    self._pool.give_back()  # they went while the pool answered
                    return
                if not self._pool.shared:
                    return
                await asyncio.sleep(pause)
                pause = min(2 * pause, LEND_RETRY_S[1])
        finally:
            self._lender = None

    def _next_under_share(self) -> TenantLane | None:
        """The first lane, in `_next_lane` order, of the waiting lanes below their share.
        The first waiting lane may be over its share while others behind it are below: a
        tenant that held much on average can hold little now (with several processes often,
        once a process's slots went to quiet borrowers)."""
        if not self._backlogged:
            return None
        now = time.monotonic()
        active_weight = self._active_weight(now)  # the same for every waiting lane
        below = [
            lane for lane in self._backlogged.values() if self._below(lane, now, active_weight)
        ]
        return min(below, key=self._next_lane) if below else None

    def _hand_on(self, lane: TenantLane | None) -> bool:
        """Give a slot to `lane`'s first waiter still waiting; False if it has none."""
        while lane is not None and lane.waiters:
            waiter = lane.waiters.popleft()
            if not lane.waiters:
                del self._backlogged[lane.tenant]
            if waiter.done():  # cancelled; its task has not run its cleanup yet
                continue
            self._admit(lane)
            waiter.set_result(True)
            return True
        return False

    def _timeout_error(self) -> GatewayError:
        waited = f"{self._timeout_s:g}"
        if self._on_timeout == 503:
            return ServiceUnavailable(
                f"The model server is at capacity: the request waited {waited} s for a slot. "
                "Please try again shortly.",
                "queue_timeout",
                self._retry_after_s,
            )
        return RateLimitError(
            f"Too many requests in flight: the request waited {waited} s for a slot. "
            "Please try again shortly.",
            "requests",
            "queue_timeout",
            {"retry-after": str(self._retry_after_s)},
        )


def reserved_slots(max_in_flight: int, reserved_share: float) -> int:
    """Slots of the budget kept for tenants below their fair share.

    Always at least one slot short of the budget (so none of a budget of one): over-share
    waiters must still get slots below the reserve, or they would starve.
    """
    if not 0 <= reserved_share < 1:
        raise ValueError("reserved_share must be at least 0 and below 1")
    return min(math.ceil(max_in_flight * reserved_share), max_in_flight - 1)


def pooled_slots(budget: int, reserved: int, processes: int, per_extra_process: int) -> int:
    """The slots of one reserve lent to `processes` processes: `reserved` and
    `per_extra_process` more for each process beyond the first, as far as each process keeps
    an open slot (none without a reserve)."""
    if not reserved:
        return 0
    grown = reserved + per_extra_process * (processes - 1)
    return min(grown, max(reserved, budget - processes))


class TenantLane:
    """One tenant's place in the queue; the async context manager that `slot` returns.

    Shared by all of the tenant's requests (it holds no per-request state), so entering a
    slot allocates nothing on the fast path.
    """

    __slots__ = (
        "_queue",
        "held",
        "held_at",
        "in_flight",
        "last_active",
        "step",
        "tenant",
        "virtual",
        "waiters",
        "weight",
    )

    def __init__(self, queue: FairQueue, tenant: str, weight: float) -> None:
        self._queue = queue
        self.tenant = tenant
        self.in_flight = 0
        self.held, self.held_at = 0.0, -math.inf  # slots held on average, as of `held_at`
        self.last_active = -math.inf  # when a request last left (a slot, or the queue)
        self.virtual = 0.0  # virtual time at which the tenant's next request may start
        self.waiters: deque[asyncio.Future[bool]] = deque()
        self.reweigh(weight)

    def reweigh(self, weight: float) -> None:
        if weight <= 0:
            raise ValueError("a tenant's weight must be positive")
        self.weight = weight
        self.step = 1.0 / weight

    async def __aenter__(self) -> None:
        queue = self._queue
        if not queue._enter_at_once(self) and not await queue._enter_reserve(self):
            with tracing.span("gateway.fair_queue"):
                await queue._wait(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._queue._release(self)
