"""One vLLM server as the router sees it: reachability, load, and the adapters it holds."""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Replica:
    """Mutable state of one replica, read on every routing decision, so plain attributes.

    `adapters` maps each adapter the server holds to the path it was loaded from (None when
    unknown), least recently routed to first: the first idle entry is the LRU victim.
    Adapters being loaded are in `loading` (one task per adapter: single flight) and count
    against the slots already, so two concurrent first uses cannot overfill a replica.
    """

    url: str
    healthy: bool = True
    failures: int = 0
    # requests this gateway has in flight there, and what the replica itself reports
    outstanding: int = 0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    max_lora: int | None = None
    running: frozenset[str] = frozenset()  # adapters in a vLLM LoRA slot at the last scrape
    waiting_for: frozenset[str] = frozenset()  # adapters requests waited for at the last scrape
    base_models: frozenset[str] = frozenset()
    adapters: OrderedDict[str, str | None] = field(default_factory=OrderedDict)
    in_use: Counter[str] = field(default_factory=Counter)
    loading: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # when this gateway last loaded or unloaded an adapter here (monotonic): a /v1/models
    # answer read before that is stale and must not overwrite `adapters`
    changed_at: float = 0.0
    # a health check failed since the last /v1/models sync: the server may have restarted
    unreachable_since_sync: bool = False

    def occupied(self) -> int:
        """Adapter slots taken, counting adapters on their way in."""
        return len(self.adapters) + sum(1 for name in self.loading if name not in self.adapters)

    def holds(self, adapter: str, path: str | None) -> bool:
        """True when `adapter` is loaded from `path` (any path when None) or being loaded."""
        if adapter in self.loading:
            return True
        loaded_from = self.adapters.get(adapter, _ABSENT)
        return loaded_from is not _ABSENT and (path is None or loaded_from == path)

    def idle_adapters(self) -> list[str]:
        """Loaded adapters with no request in flight and no load running, LRU first; nor
        ones vLLM said at its last scrape that requests run with or wait for: those may be
        another gateway process's (a worker, an instance), whose requests this one cannot
        see, and unloading one under them fails them with a 404 (and can crash vLLM 0.26)."""
        busy = self.running | self.waiting_for
        return [
            name
            for name in self.adapters
            if not self.in_use[name] and name not in self.loading and name not in busy
        ]


_ABSENT = object()
