"""Route a request: the public model name -> upstream model (base or adapter) -> replica.

`Router.acquire(target)` picks a replica (gateway/replicas/selection.py says how), makes sure
the target's adapter is loaded there (single flight, gateway/adapters/loader.py) and returns
a `Lease`, which counts the request as in flight on that replica until `release()`.
`Lease.send` makes the upstream call and retries it where that is safe: a connect failure on
another replica (nothing was sent yet, so nothing can be duplicated), and a 404 for an adapter
the replica was thought to hold (it restarted and lost it) once more after loading it again; a
second 404 (another gateway process unloaded it again meanwhile) is a 503 to send again.
Streams are retried only before their first byte, because `send` returns with the response
headers and the relay starts after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.adapters.catalog import AdapterCatalog
from gateway.adapters.loader import AdapterLoader, AdapterLoadError
from gateway.adapters.models import AdapterRecord
from gateway.adapters.registry import AdapterRegistry
from gateway.core.errors import GatewayError, StoreUnavailable, UpstreamUnavailable
from gateway.core.filters import Rename
from gateway.replicas.control import ReplicaClient, control_pool
from gateway.replicas.discovery import Resolver, resolve_addresses
from gateway.replicas.monitor import ReplicaMonitor
from gateway.replicas.pool import ReplicaPool
from gateway.replicas.replica import Replica
from gateway.replicas.selection import PrefixBlocks, routing_policy
from gateway.settings import RoutingSettings
from gateway.tenancy.models import ModelRoute
from gateway.upstream.base import Transport, UpstreamResponse

__all__ = ["Lease", "ModelTarget", "Replica", "Router"]

logger = logging.getLogger(__name__)

UpstreamCall = Callable[[str], Awaitable[UpstreamResponse]]


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """The name the client used and the route behind it."""

    public_name: str
    route: ModelRoute

    @property
    def upstream_name(self) -> str:
        """vLLM serves an adapter under its own name, the base model under the served name."""
        return self.route.adapter or self.route.base_model

    def response_rename(self) -> Rename | None:
        """The filter that swaps the name in vLLM's answers for the one the client asked for."""
        if self.upstream_name == self.public_name:
            return None
        return Rename(
            b'"model":"' + self.upstream_name.encode() + b'"',
            b'"model":"' + self.public_name.encode() + b'"',
        )


class Router:
    """The replicas, the adapter registry's copy and the loader, behind `acquire`."""

    def __init__(
        self,
        replica_urls: list[str],
        settings: RoutingSettings,
        registry: AdapterRegistry | None = None,
        api_key: str | None = None,
        resolve: Resolver = resolve_addresses,
        control_transport: Transport | None = None,
        processes: Callable[[], int] = lambda: 1,
    ) -> None:
        """`processes()`: how many gateway processes share the replicas (gateway/peers.py)."""
        self.settings = settings
        self.catalog = AdapterCatalog(registry)
        self._client = ReplicaClient(
            control_transport or control_pool(),
            api_key,
            settings.health_timeout_s,
            settings.load_timeout_s,
        )
        self.loader = AdapterLoader(self._client, settings, self.catalog)
        self.monitor = ReplicaMonitor(
            self._client, settings, self.catalog.is_registered, self.loader.reapply
        )
        self.pool = ReplicaPool(replica_urls, self.monitor, settings.dns_refresh_s, resolve)
        self._selector = routing_policy(
            settings, self.loader.capacity, self.catalog.is_registered, processes
        )
        self._catalog_refresher: asyncio.Task[None] | None = None

    @property
    def replicas(self) -> list[Replica]:
        """Every replica, healthy ones first."""
        replicas = self.pool.replicas
        return [r for r in replicas if r.healthy] + [r for r in replicas if not r.healthy]

    async def start(self) -> None:
        """Read the registry, check and sync every replica, then keep both current."""
        await self._client.start()
        # Unavailable: serve, and read it again later (its health logs it once).
        with contextlib.suppress(StoreUnavailable):
            await self.catalog.refresh()
        await self.pool.start()
        self._catalog_refresher = asyncio.create_task(
            self.catalog.refresh_forever(self.settings.registry_refresh_s, self._retire)
        )

    async def close(self) -> None:
        if self._catalog_refresher is not None:
            self._catalog_refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catalog_refresher
        await self.pool.close()
        await self._client.close()

    async def _retire(self, record: AdapterRecord) -> None:
        await self.loader.retire(self.pool.replicas, record)

    async def acquire(
        self,
        target: ModelTarget | None,
        body: Mapping[str, Any] | None = None,
        tenant: str | None = None,
    ) -> Lease:
        """A lease on the replica for `target` (None: any), its adapter loaded there; the
        request's parsed `body` and `tenant` let a prefix-aware policy find its prompt prefix."""
        record = await self._record(target)
        prefix = self._selector.prefix_of(tenant, body) if body is not None else ()
        return Lease(self, target, record, await self._place(target, record, [], prefix))

    async def _record(self, target: ModelTarget | None) -> AdapterRecord | None:
        """The registry record of the target's adapter; None for the base model and for an
        adapter vLLM was started with (unregistered)."""
        adapter = target.route.adapter if target is not None else None
        if adapter is None:
            return None
        record = self.catalog.records.get(adapter)
        if record is None and not any(adapter in r.adapters for r in self.pool.replicas):
            record = await self.catalog.lookup(adapter)  # registered since the last refresh?
        return record

    async def _place(
        self,
        target: ModelTarget | None,
        record: AdapterRecord | None,
        exclude: list[Replica],
        prefix: PrefixBlocks = (),
    ) -> Replica:
        """Pick a replica, count the request on it, and load the adapter there if need be."""
        base_model = target.route.base_model if target is not None else None
        adapter = target.route.adapter if target is not None else None
        path = record.path if record is not None else None
        failure: AdapterLoadError | None = None
        while True:
            replica = self._selector.pick(
                self.pool.replicas, base_model, adapter, path, exclude, prefix
            )
            if replica is None:
                if failure is not None and record is not None:
                    raise _load_refused(target, record, failure)
                raise _no_replica(len(self.pool.replicas))
            _take(replica, adapter)
            if record is None or (
                record.name not in replica.loading and replica.holds(record.name, path)
            ):
                return replica
            try:
                await self.loader.ensure(replica, record)
            except AdapterLoadError as error:
                _give_back(replica, adapter)
                if not error.transient:
                    raise _load_refused(target, record, error) from None
                failure = error
                exclude.append(replica)
                continue
            except BaseException:
                _give_back(replica, adapter)
                raise
            return replica


class Lease:
    """One request's claim on a replica; `release()` exactly once, when the answer is relayed."""

    __slots__ = ("_adapter", "_record", "_released", "_router", "_target", "replica")

    def __init__(
        self,
        router: Router,
        target: ModelTarget | None,
        record: AdapterRecord | None,
        replica: Replica,
    ) -> None:
        self.replica = replica
        self._router = router
        self._target = target
        self._record = record
        self._adapter = target.route.adapter if target is not None else None
        self._released = False

    @property
    def url(self) -> str:
        return self.replica.url

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """`call(replica_url)` until it reaches a replica that can serve the request.

        A 503 `upstream_unavailable` (cannot connect) moves the lease to another replica;
        a 404 for a registered adapter reloads it and tries once more, and a 404 again is a
        503 `adapter_unavailable`: the adapter exists, vLLM's "does not exist" (naming it, not
        the client's model) would tell the client not to retry.
        """
        tried: list[Replica] = []
        reloaded = False
        while True:
            try:
                response = await call(self.replica.url)
            except UpstreamUnavailable as error:
                self._router.monitor.record_failure(self.replica)
                tried.append(self.replica)
                await self._move(tried, error)
                continue
            if response.status != 404 or self._record is None:
                return response
            response.release()
            if reloaded:
                raise _unloaded_again(self._target, self._record)
            reloaded = True
            await self._reload()

    def release(self) -> None:
        if not self._released:
            self._released = True
            _give_back(self.replica, self._adapter)

    async def _move(self, tried: list[Replica], cause: GatewayError) -> None:
        try:
            replica = await self._router._place(self._target, self._record, list(tried))
        except UpstreamUnavailable:
            raise cause from None
        _give_back(self.replica, self._adapter)
        self.replica = replica

    async def _reload(self) -> None:
        """The replica lost the adapter (a restart the health checks missed): load it again."""
        assert self._record is not None
        replica, name = self.replica, self._record.name
        if name not in replica.loading:
            replica.adapters.pop(name, None)
            replica.changed_at = time.monotonic()
        try:
            await self._router.loader.ensure(replica, self._record)
        except AdapterLoadError as error:
            raise _load_refused(self._target, self._record, error) from None


def _take(replica: Replica, adapter: str | None) -> None:
    replica.outstanding += 1
    if adapter is not None:
        replica.in_use[adapter] += 1
        if adapter in replica.adapters:
            replica.adapters.move_to_end(adapter)


def _give_back(replica: Replica, adapter: str | None) -> None:
    replica.outstanding -= 1
    if adapter is not None:
        left = replica.in_use[adapter] - 1
        if left:
            replica.in_use[adapter] = left
        else:
            del replica.in_use[adapter]


def _no_replica(count: int) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"none of the {count} replicas passes its health checks"
        if count
        else "no replica is configured or resolved"
    )


def _unloaded_again(target: ModelTarget | None, record: AdapterRecord) -> GatewayError:
    model = target.public_name if target is not None else record.name
    return GatewayError(
        503,
        f"The model `{model}` is unavailable: its LoRA adapter was unloaded from the model "
        "server while the request was on its way. Send the request again.",
        "upstream_error",
        None,
        "adapter_unavailable",
    )


def _load_refused(
    target: ModelTarget | None, record: AdapterRecord, error: AdapterLoadError
) -> GatewayError:
    """The client's error: which model, and vLLM's reason without the path on the vLLM host."""
    model = target.public_name if target is not None else record.name
    reason = error.message.replace(record.path, "<adapter path>")
    status = 503 if error.transient else 502
    return GatewayError(
        status,
        f"The model `{model}` is unavailable: its LoRA adapter could not be loaded ({reason}).",
        "upstream_error",
        None,
        "adapter_load_failed",
    )
