"""The current set of replicas: the configured URLs resolved, each one watched.

`replicas` is replaced, never mutated, so a routing decision iterates over one consistent
list while a DNS refresh builds the next. A new replica joins only after its first health
check and sync, so no request reaches a replica the gateway knows nothing about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.replicas.discovery import Resolver, replica_urls, resolve_addresses
from gateway.replicas.monitor import ReplicaMonitor
from gateway.replicas.replica import Replica

logger = logging.getLogger(__name__)


class ReplicaPool:
    def __init__(
        self,
        configured: list[str],
        monitor: ReplicaMonitor,
        dns_refresh_s: float,
        resolve: Resolver = resolve_addresses,
    ) -> None:
        if not configured:
            raise ValueError("at least one upstream replica is required")
        self.replicas: list[Replica] = []
        self._configured = configured
        self._monitor = monitor
        self._dns_refresh_s = dns_refresh_s
        self._resolve = resolve
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        tasks = [*self._watchers.values(), *([self._refresher] if self._refresher else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()

    async def refresh(self) -> None:
        """Resolve the configured URLs again; add and watch new replicas, drop vanished ones."""
        try:
            urls = await replica_urls(self._configured, self._resolve)
        except OSError as error:
            if self.replicas:
                logger.warning("resolving replicas failed, keeping the current ones: %s", error)
                return
            logger.warning("resolving replicas failed, using the names as given: %s", error)
            urls = [url.rstrip("/") for url in self._configured]
        current = {replica.url: replica for replica in self.replicas}
        joining = [Replica(url) for url in urls if url not in current]
        await asyncio.gather(*(self._monitor.first_check(replica) for replica in joining))
        by_url = current | {replica.url: replica for replica in joining}
        self.replicas = [by_url[url] for url in urls]
        for replica in joining:
            self._watchers[replica.url] = asyncio.create_task(self._monitor.watch(replica))
        for url in current.keys() - set(urls):
            logger.warning("replica %s left the pool (no longer resolved)", url)
            self._watchers.pop(url).cancel()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._dns_refresh_s)
            try:
                await self.refresh()
            except Exception:  # keep refreshing: the next answer may be good
                logger.exception("refreshing the replica pool failed")
