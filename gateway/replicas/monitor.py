"""Keep each replica's state current: health checks that eject and re-admit, and a periodic
sync of its load (/metrics) and adapters (/v1/models) that notices a restart.

A replica is ejected after `eject_after_failures` consecutive failed health checks (connect
failures of real requests count too) and re-admitted by the first check that passes.

Restart: adapters loaded at runtime live only in the server's memory, so a restarted vLLM
has lost them. Two signs count as a restart: the replica failed a health check since the
last sync, or every registered adapter it held vanished at once. One adapter vanishing
alone is another gateway instance's LRU unload: it is forgotten, not re-applied, or two
instances would keep loading back what the other unloaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from gateway.replicas.control import ReplicaClient, ReplicaUnreachable
from gateway.replicas.metrics import parse_load
from gateway.replicas.replica import Replica
from gateway.settings import RoutingSettings

logger = logging.getLogger(__name__)

RestartHandler = Callable[[Replica, dict[str, str | None]], Awaitable[None]]
IsRegistered = Callable[[str], bool]


class ReplicaMonitor:
    def __init__(
        self,
        client: ReplicaClient,
        settings: RoutingSettings,
        is_registered: IsRegistered,
        on_restart: RestartHandler,
    ) -> None:
        self._client = client
        self._settings = settings
        self._is_registered = is_registered
        self._on_restart = on_restart

    async def first_check(self, replica: Replica) -> None:
        """A new replica starts ejected unless it answers now: never route blind."""
        replica.healthy = await self._client.healthy(replica.url)
        if replica.healthy:
            await self.sync(replica)
        else:
            replica.failures = 1
            logger.warning("replica %s does not answer its health check yet", replica.url)

    async def watch(self, replica: Replica) -> None:
        """Check health every interval and sync on the scrape schedule, until cancelled."""
        next_sync = time.monotonic() + self._settings.scrape_interval_s
        while True:
            await asyncio.sleep(self._settings.health_interval_s)
            try:
                was_healthy = replica.healthy
                if not await self.check_health(replica):
                    continue
                if not was_healthy or time.monotonic() >= next_sync:
                    await self.sync(replica)
                    next_sync = time.monotonic() + self._settings.scrape_interval_s
            except Exception:  # a bug here must not end the replica's health checks
                logger.exception("watching replica %s failed", replica.url)

    async def check_health(self, replica: Replica) -> bool:
        if not await self._client.healthy(replica.url):
            self.record_failure(replica)
            return False
        if not replica.healthy:
            logger.warning("replica %s passes its health check again: re-admitted", replica.url)
        replica.healthy = True
        replica.failures = 0
        return True

    def record_failure(self, replica: Replica) -> None:
        """A failed check or connect; enough of them in a row eject the replica."""
        replica.failures += 1
        replica.unreachable_since_sync = True
        if replica.healthy and replica.failures >= self._settings.eject_after_failures:
            replica.healthy = False
            logger.warning(
                "replica %s ejected after %d failures in a row", replica.url, replica.failures
            )

    async def sync(self, replica: Replica) -> None:
        """Read load and adapters; re-apply lost adapters when the replica restarted."""
        started = time.monotonic()
        try:
            load = parse_load(await self._client.metrics(replica.url))
            served = await self._client.models(replica.url)
        except ReplicaUnreachable as error:
            logger.info("replica %s: sync failed: %s", replica.url, error)
            return
        replica.waiting = load.waiting
        replica.kv_cache_usage = load.kv_cache_usage
        replica.max_lora = load.max_lora
        replica.running = load.running_adapters
        replica.waiting_for = load.waiting_adapters
        replica.base_models = served.base_models
        if replica.changed_at > started:
            return  # this gateway loaded or unloaded meanwhile: the list may predate that
        present = served.adapters
        lost = {
            name: path
            for name, path in replica.adapters.items()
            if name not in present and name not in replica.loading
        }
        registered = [name for name in replica.adapters if self._is_registered(name)]
        restarted = replica.unreachable_since_sync or (
            bool(registered) and all(name in lost for name in registered)
        )
        replica.unreachable_since_sync = False
        # Adapters seen for the first time go first, as least recently used: this gateway
        # has not routed to them yet.
        known = [name for name in replica.adapters if name in present]
        unseen = [name for name in present if name not in replica.adapters]
        replica.adapters = OrderedDict((name, present[name]) for name in [*unseen, *known])
        if restarted and lost:
            logger.warning(
                "replica %s restarted and lost adapters %s: re-applying",
                replica.url,
                ", ".join(sorted(lost)),
            )
            await self._on_restart(replica, lost)
