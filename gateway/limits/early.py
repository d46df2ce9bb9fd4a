"""Early dispatch: when the limits are far away, the Redis round trip overlaps vLLM's.

Admitting a request takes one round trip to Redis; waiting for it before calling vLLM puts
that round trip (about 0.1-0.3 ms on a loopback, more across hosts) on every request's path.
But most requests come nowhere near a limit: each admission's reply says how many more
requests of the same size every limit of every scope would still take (`Reservation.spare`).
While this process's latest such answer is fresh (`FRESH_S`) and its requests sent early
and not yet answered take at most its part of half that room (half the room divided between
the gateway processes of the deployment, counted by gateway/peers.py; the other half is the
margin for requests in flight elsewhere), a request goes to vLLM at once and its reservation
runs alongside; the answer is awaited before the first byte goes back to the client.

Nothing about the limits changes: Redis still admits or refuses every request, exactly as
before, and only an admitted request's answer reaches its client. A refused early request is
cut off (the caller closes its upstream connection, so vLLM aborts it) and answered 429 like
any other; the cost of guessing wrong is that vLLM saw the start of a request it then
dropped, which takes the other processes using up the spare room within `FRESH_S`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.limits.reservation import Reservation

Reserve = Callable[[], Coroutine[Any, Any, Reservation]]
FRESH_S = 1.0  # how long an admission's count of spare room is trusted
_MAX_TRACKED = 100_000  # limit sets remembered; past that the memory starts over


class SpareRoom:
    """The latest spare room per set of limits, and the early requests sent against it."""

    __slots__ = ("at", "room", "unanswered")

    def __init__(self) -> None:
        self.room = 0
        self.at = -FRESH_S
        self.unanswered = 0

    def allows_early(self, now: float, processes: int = 1) -> bool:
        """`processes`: the gateway processes sharing the limits (each gets its part)."""
        return now - self.at < FRESH_S and 2 * processes * (self.unanswered + 1) <= self.room

    def update(self, reservation: Reservation) -> None:
        if reservation.spare is None:  # the local limiter decided (Redis in trouble)
            self.room = 0
        else:
            self.room, self.at = reservation.spare, time.monotonic()


class SpareRooms:
    """One `SpareRoom` per set of limits (a plan's scopes and their limits)."""

    def __init__(self) -> None:
        self._rooms: dict[tuple[str, ...], SpareRoom] = {}

    def get(self, limits: tuple[str, ...]) -> SpareRoom:
        room = self._rooms.get(limits)
        if room is None:
            if len(self._rooms) >= _MAX_TRACKED:
                self._rooms.clear()
            room = self._rooms[limits] = SpareRoom()
        return room


class Admission:
    """A request's way past its limits, in the order the pipeline needs it:

    `cleared()` before the upstream call (waits for Redis unless `early`), `confirmed()`
    before the first byte of the answer (the reservation, or the 429 / 503 that refused it),
    `settle(tokens)` at the end, whatever happened (an early reservation still on its way is
    settled when it lands).
    """

    __slots__ = ("_pending", "early", "reservation")

    def __init__(
        self,
        reservation: Reservation | None = None,
        reserve: Reserve | None = None,
        early: bool = False,
    ) -> None:
        """Either a `reservation` already made, or how to `reserve` one: at once, as a task
        running alongside the caller, when `early`; else when `cleared` is awaited."""
        self.reservation = reservation
        self.early = early
        self._pending: asyncio.Task[Reservation] | Reserve | None = reserve
        if reserve is not None and early:
            self._pending = asyncio.get_running_loop().create_task(reserve())

    async def cleared(self) -> None:
        if not self.early:
            await self.confirmed()

    async def confirmed(self) -> Reservation:
        if self.reservation is None:
            pending = self._pending
            assert pending is not None, "confirmed() after settle()"
            if isinstance(pending, asyncio.Task):
                # Shielded: a client leaving now must not cut off a reservation Redis may
                # already have made; `settle` settles it when it lands.
                self.reservation = await asyncio.shield(pending)
            else:
                self._pending = None
                self.reservation = await pending()
            self._pending = None
        return self.reservation

    def settle(self, used_tokens: int) -> None:
        """Charge `used_tokens` and free the request's concurrency slots (at most once)."""
        if self.reservation is not None:
            self.reservation.settle(used_tokens)
        elif isinstance(self._pending, asyncio.Task):
            self._pending.add_done_callback(lambda task: _settle_landed(task, used_tokens))
        self._pending = None


def _settle_landed(task: asyncio.Task[Reservation], used_tokens: int) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().settle(used_tokens)
