"""Serving the metrics: the /metrics route, its own port, and multiprocess mode for workers.

Three ways, chosen by settings: /metrics on the main port (open, or behind an admin key), or on
a port of its own served by the CLI's process. With several uvicorn workers every worker
records into files under PROMETHEUS_MULTIPROC_DIR and every scrape merges them, so a scrape
sees the whole gateway, whichever worker answers it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from gateway.core.asgi import Receive, Scope, Send, header, send_response
from gateway.core.context import RequestContext
from gateway.settings import Settings
from gateway.tenancy.admin_keys import AdminAuth

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MetricsHandler = Callable[[RequestContext, Scope, Receive, Send], Awaitable[None]]
_BEARER = b"bearer "


@functools.cache
def metrics_registry() -> CollectorRegistry:
    """This process's metrics, or every worker's merged when in multiprocess mode."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(LiveWorkersCollector(directory))
    return registry


class LiveWorkersCollector(MultiProcessCollector):
    """Merges every worker's sample files, first dropping the live gauges of workers that are
    gone: a crashed or replaced uvicorn worker never says so, and its requests in flight
    would otherwise be counted for ever."""

    # prometheus_client.multiprocess has no annotations, hence the ignores (mypy's strict mode
    # would accept calls to it once it has).
    def __init__(self, directory: str) -> None:
        super().__init__(None, directory)  # type: ignore[no-untyped-call]
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        for path in Path(self._directory).glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if not _alive(pid):
                mark_process_dead(pid, self._directory)  # type: ignore[no-untyped-call]
        metrics: Iterable[Metric] = super().collect()  # type: ignore[no-untyped-call]
        return metrics


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


async def metrics_endpoint(ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /metrics in Prometheus' text format, or in OpenMetrics' for a scraper that asks
    for it (Prometheus does), which carries the histograms' exemplars (trace ids)."""
    accept = header(scope, b"accept")
    encode, content_type = choose_encoder(accept.decode(errors="replace") if accept else "")
    # Rendering reads every worker's files in multiprocess mode: keep it off the event loop.
    body = await asyncio.to_thread(encode, metrics_registry())
    ctx.status = 200
    await send_response(send, 200, body, ctx.response_headers(), content_type.encode())


class AdminKeyMetrics:
    """/metrics for callers that present an admin key (Prometheus' `authorization` setting)."""

    def __init__(self, admin_keys: list[str]) -> None:
        self._auth = AdminAuth(admin_keys)

    async def handle(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = header(scope, b"authorization")
        token = None
        if authorization and authorization[:7].lower() == _BEARER:
            token = authorization[7:].strip().decode(errors="replace")
        self._auth.identify(token)
        await metrics_endpoint(ctx, scope, receive, send)


def metrics_handler(settings: Settings) -> MetricsHandler | None:
    """The handler for GET /metrics on the main port; None when it is off or on its own port."""
    observability = settings.observability
    if not observability.metrics_enabled or observability.metrics_port is not None:
        return None
    if observability.metrics_require_admin_key:
        return AdminKeyMetrics(settings.admin.all_keys()).handle
    return metrics_endpoint


@contextmanager
def metrics_process(settings: Settings) -> Iterator[None]:
    """Wrap uvicorn.run in the CLI's process: prepare multiprocess mode for several workers
    (a clean directory, named to the workers through the environment they inherit) and serve
    the separate metrics port when one is set; undo both on the way out."""
    created: Path | None = None
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        _remove_samples(Path(directory))
    elif settings.server.workers > 1:
        created = Path(tempfile.mkdtemp(prefix="vllm-gateway-metrics-"))
        os.environ[MULTIPROC_ENV] = str(created)
    metrics_registry.cache_clear()
    observability = settings.observability
    server = None
    if observability.metrics_enabled and observability.metrics_port is not None:
        server, _ = start_http_server(
            observability.metrics_port, settings.server.host, metrics_registry()
        )
    try:
        yield
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if created is not None:
            del os.environ[MULTIPROC_ENV]
            shutil.rmtree(created, ignore_errors=True)
        metrics_registry.cache_clear()


def _remove_samples(directory: Path) -> None:
    """Counters restart at zero with the gateway: drop the sample files of a previous run."""
    directory.mkdir(parents=True, exist_ok=True)
    for samples in directory.glob("*.db"):
        samples.unlink()
