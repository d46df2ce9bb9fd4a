"""Put adapters onto replicas and take them off: one load per (replica, adapter) at a time.

Single flight: the first request for an adapter a replica lacks starts the load as a task of
its own; every request for it that arrives meanwhile awaits the same task (shielded, so a
client that hangs up does not abort a load others wait for). A load that fails for a reason
that may pass (no answer, 502/503/504) is tried again with backoff; vLLM refusing it (a bad
path, a rank above --max-lora-rank) fails at once. vLLM answering "already loaded" is a
success: another gateway instance was first.

Slots: a replica keeps at most `capacity` adapters. Loading one more first unloads the least
recently used idle one; only registered adapters are unloaded (the gateway can load them
back), never one with a request in flight: neither this process's (it counts them) nor
another worker's or instance's (vLLM's metrics, read afresh before the unload, name the
adapters its running and waiting requests use). With no such victim the load goes ahead anyway
and the replica is over its slots until requests finish: vLLM copes (it keeps its own LRU
cache of adapter weights), while refusing the request would not help anyone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from gateway.adapters.catalog import AdapterCatalog
from gateway.adapters.models import AdapterRecord
from gateway.observability import metrics, tracing
from gateway.replicas.control import Answer, ReplicaClient, ReplicaUnreachable
from gateway.replicas.metrics import parse_load
from gateway.replicas.replica import Replica
from gateway.settings import RoutingSettings

logger = logging.getLogger(__name__)

FIRST_RETRY_DELAY_S = 0.25
TRANSIENT_STATUSES = frozenset({502, 503, 504})


class AdapterLoadError(Exception):
    """vLLM did not load the adapter; `transient` when another replica or later may work."""

    def __init__(self, message: str, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status


@dataclass(slots=True)
class LoaderStats:
    """Calls to vLLM's adapter routes, for the benchmark and the operator."""

    load_calls: int = 0
    load_failures: int = 0
    unload_calls: int = 0
    reapplied: int = 0


class AdapterLoader:
    def __init__(
        self, client: ReplicaClient, settings: RoutingSettings, catalog: AdapterCatalog
    ) -> None:
        self.stats = LoaderStats()
        self._client = client
        self._settings = settings
        self._catalog = catalog

    def capacity(self, replica: Replica) -> int | None:
        """Adapter slots of `replica`; None while unknown: vLLM reports `max_lora` only once
        it has scheduled a request, and until then loads are not limited."""
        if self._settings.adapter_slots is not None:
            return self._settings.adapter_slots
        if replica.max_lora is None:
            return None
        return max(1, replica.max_lora - self._settings.spare_lora_slots)

    async def ensure(self, replica: Replica, record: AdapterRecord) -> None:
        """Return once `record` is loaded on `replica`; raise AdapterLoadError if it cannot be."""
        task = replica.loading.get(record.name)
        if task is None:
            if replica.holds(record.name, record.path):
                return
            task = asyncio.create_task(self._load(replica, record))
            replica.loading[record.name] = task
            task.add_done_callback(lambda done: _forget(replica, record.name, done))
        with tracing.span("gateway.adapter.load", {"gateway.upstream.adapter": record.name}):
            await asyncio.shield(task)

    async def reapply(self, replica: Replica, lost: dict[str, str | None]) -> None:
        """After a restart: load back the registered adapters `replica` lost, the most recently
        used first, as many as fit its free slots."""
        names = [name for name in reversed(lost) if self._catalog.is_registered(name)]
        capacity = self.capacity(replica)
        if capacity is not None:
            names = names[: max(0, capacity - replica.occupied())]
        outcomes = await asyncio.gather(
            *(self.ensure(replica, self._catalog.records[name]) for name in names),
            return_exceptions=True,
        )
        self.stats.reapplied += sum(1 for outcome in outcomes if outcome is None)

    async def retire(self, replicas: list[Replica], record: AdapterRecord) -> None:
        """Unload a deregistered adapter wherever it is idle; where requests still use it,
        it goes as an unmanaged adapter would: when the replica restarts."""
        for replica in replicas:
            if record.name in replica.idle_adapters():
                del replica.adapters[record.name]
                replica.changed_at = time.monotonic()
                await self._unload(replica, record.name)

    async def _load(self, replica: Replica, record: AdapterRecord) -> None:
        await self._make_room(replica, record.name)
        in_place = record.name in replica.adapters  # loaded from an older path
        delay = FIRST_RETRY_DELAY_S
        for attempt in range(1, self._settings.load_attempts + 1):
            failure = await self._try_load(replica, record, in_place)
            if failure is None:
                replica.adapters[record.name] = record.path
                replica.adapters.move_to_end(record.name)
                replica.changed_at = time.monotonic()
                metrics.adapter_operation(replica.url, "load", ok=True)
                return
            if not failure.transient or attempt == self._settings.load_attempts:
                break
            await asyncio.sleep(delay)
            delay *= 2
        assert failure is not None  # load_attempts >= 1, and the loop leaves on a failure
        self.stats.load_failures += 1
        metrics.adapter_operation(replica.url, "load", ok=False)
        logger.warning(
            "loading adapter %s from %s on %s failed: %s",
            record.name,
            record.path,
            replica.url,
            failure.message,
        )
        raise failure

    async def _try_load(
        self, replica: Replica, record: AdapterRecord, in_place: bool
    ) -> AdapterLoadError | None:
        self.stats.load_calls += 1
        try:
            answer = await self._client.load_adapter(
                replica.url, record.name, record.path, in_place
            )
        except ReplicaUnreachable as error:
            return AdapterLoadError(f"the model server did not answer ({error})", True)
        if answer.status == 200 or _already_loaded(answer):
            return None
        return AdapterLoadError(
            f"vLLM answered {answer.status}: {answer.error_message()}",
            answer.status in TRANSIENT_STATUSES,
            answer.status,
        )

    async def _make_room(self, replica: Replica, loading: str) -> None:
        capacity = self.capacity(replica)
        refreshed = False
        while capacity is not None and replica.occupied() > capacity:
            victims = self._victims(replica, loading)
            if victims and not refreshed:
                # The last scrape may be seconds old; another worker or instance may have
                # started requests with the victim since. Unloading under them fails them
                # (and can crash vLLM 0.26), so ask vLLM what runs now, once per load.
                await self._refresh_running(replica)
                refreshed = True
                victims = self._victims(replica, loading)
            if not victims:
                logger.info("replica %s goes over its %d adapter slots", replica.url, capacity)
                return
            del replica.adapters[victims[0]]
            replica.changed_at = time.monotonic()
            await self._unload(replica, victims[0])

    def _victims(self, replica: Replica, loading: str) -> list[str]:
        return [
            name
            for name in replica.idle_adapters()
            if name != loading and self._catalog.is_registered(name)
        ]

    async def _refresh_running(self, replica: Replica) -> None:
        """Update the adapters vLLM runs or has waiting requests for; keep the last scrape's
        when it does not answer."""
        try:
            load = parse_load(await self._client.metrics(replica.url))
        except ReplicaUnreachable as error:
            logger.info("replica %s: no fresh metrics before an unload: %s", replica.url, error)
            return
        replica.running = load.running_adapters
        replica.waiting_for = load.waiting_adapters

    async def _unload(self, replica: Replica, name: str) -> None:
        self.stats.unload_calls += 1
        try:
            answer = await self._client.unload_adapter(replica.url, name)
        except ReplicaUnreachable as error:
            metrics.adapter_operation(replica.url, "unload", ok=False)
            logger.info("unloading adapter %s from %s: %s", name, replica.url, error)
            return
        metrics.adapter_operation(replica.url, "unload", ok=answer.status in (200, 404))
        if answer.status not in (200, 404):  # 404: gone already
            logger.warning(
                "unloading adapter %s from %s: %s", name, replica.url, answer.error_message()
            )


def _already_loaded(answer: Answer) -> bool:
    return answer.status == 400 and "already been loaded" in answer.error_message()


def _forget(replica: Replica, name: str, task: asyncio.Task[None]) -> None:
    """Drop a finished load; fetch its exception so asyncio does not log it as unseen when
    every waiter went away."""
    if replica.loading.get(name) is task:
        del replica.loading[name]
    if not task.cancelled():
        task.exception()
