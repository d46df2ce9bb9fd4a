"""LoRA slots: at most `capacity` distinct adapters run at once, as vLLM's --max-loras.

A request for an adapter that is already running, or that finds a free slot, starts at
once; any other waits until its adapter can run, earlier waiters first (vLLM's scheduler
likewise skips waiting requests whose adapter has no slot and schedules later ones).
This is what moves `waiting_lora_adapters` and `num_requests_waiting`, which LoRA-aware
routing reads.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque


class LoraSlots:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.running: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self._queue: deque[tuple[str, asyncio.Future[None]]] = deque()

    def can_start(self, adapter: str) -> bool:
        return adapter in self.running or len(self.running) < self.capacity

    async def acquire(self, adapter: str) -> None:
        if self.can_start(adapter):
            self.running[adapter] += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((adapter, future))
        self.waiting[adapter] += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(adapter)  # admitted just as the waiter was cancelled
            else:
                self._queue.remove((adapter, future))
                self._drop_waiting(adapter)
            raise

    def release(self, adapter: str) -> None:
        self.running[adapter] -= 1
        if not self.running[adapter]:
            del self.running[adapter]
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        for entry in list(self._queue):
            adapter, future = entry
            if self.can_start(adapter):
                self._queue.remove(entry)
                self._drop_waiting(adapter)
                self.running[adapter] += 1
                future.set_result(None)

    def _drop_waiting(self, adapter: str) -> None:
        self.waiting[adapter] -= 1
        if not self.waiting[adapter]:
            del self.waiting[adapter]
