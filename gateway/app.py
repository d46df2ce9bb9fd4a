"""The gateway's ASGI application: a route table, the lifespan, and the error boundary.

Dispatch is a dict lookup on (method, path) rather than a framework router: every request
pays for it, and the gateway serves a handful of fixed paths. The admin API (FastAPI, off the
hot path) receives every path under /admin/.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from gateway.admin.api import create_admin_app
from gateway.admin.state import AdminState
from gateway.core.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    send_response,
)
from gateway.core.context import RequestContext, current_request
from gateway.core.errors import (
    GatewayError,
    InternalServerError,
    MethodNotAllowed,
    NotFoundError,
)
from gateway.core.lifecycle import running
from gateway.core.status import CLIENT_CLOSED_REQUEST
from gateway.health import Readiness, healthz
from gateway.isolation.fair_queue import FairQueue
from gateway.isolation.reserve import open_reserve
from gateway.isolation.upstream_fields import TenantIsolation
from gateway.limits import open_limiter
from gateway.models_api import MODELS_PREFIX, ModelsApi
from gateway.observability import access_log, metrics, tracing
from gateway.observability.exposition import metrics_handler
from gateway.observability.tracing import RequestTrace, Tracing
from gateway.peers import Peers, RedisPeers
from gateway.pipeline import InferencePipeline
from gateway.pipeline.background import BackgroundRuns
from gateway.pipeline.relay import StreamDrain
from gateway.pipeline.stages import request_stages
from gateway.replicas.discovery import configured_urls
from gateway.responses_api import RESPONSES_PREFIX, ResponsesApi
from gateway.routing import Router
from gateway.safety.engine import SafetyEngine
from gateway.safety.events import note_on_request
from gateway.settings import Settings, load_settings
from gateway.stores import open_stores
from gateway.surfaces import SURFACES
from gateway.surfaces.responses_state import ResponseKeeper
from gateway.tenancy.admin_keys import AdminAuth
from gateway.tenancy.auth import KeyAuthenticator
from gateway.tenancy.secrets import KeyHasher, server_secret
from gateway.upstream.base import Transport
from gateway.upstream.client import UpstreamClient
from gateway.upstream.http import HttpTransport
from gateway.usage.ledger import Delivery, UsageLedger
from gateway.usage.retention import RecordRetention

Handler = Callable[[RequestContext, Scope, Receive, Send], Awaitable[None]]
logger = logging.getLogger("gateway")
ADMIN_PREFIX = "/admin/"


class GatewayApp:
    """`transport`: how to reach the replicas, for inference and control calls alike (tests
    pass a `MemoryTransport`); by default, HTTP pools of their own for each."""

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        replica_urls = configured_urls(settings.upstream)
        if not replica_urls:
            raise ValueError("no upstream: set upstream.url or upstream.replicas")
        self.settings = settings
        store_settings = settings.store
        stores = open_stores(store_settings, settings.usage.record_retention_days)
        self.store = stores.keys
        secret = settings.auth.key_hash_secret
        key_hash_secret = server_secret(
            secret.get_secret_value() if secret else None,
            store_settings.redis_url,
            store_settings.sqlite_path,
        )
        hasher = KeyHasher(key_hash_secret)
        self.authenticator = KeyAuthenticator(
            self.store, hasher, settings.auth.key_cache_ttl_s, settings.auth.stale_key_window_s
        )
        guard = self.authenticator if settings.auth.enabled else None
        workers = settings.server.workers
        self.peers = (
            RedisPeers(
                store_settings.redis_url,
                store_settings.redis_prefix,
                store_settings.redis_timeout_s,
                workers,
            )
            if store_settings.redis_url
            else Peers.of_workers(workers)
        )
        self.limiter = open_limiter(settings.limits, store_settings, self.peers)
        self.ledger = UsageLedger.from_settings(stores.usage, settings.usage, store_settings)
        retention = RecordRetention(stores.usage, settings.usage.record_retention_days)
        self.transport = transport or HttpTransport(settings.upstream)
        upstream = UpstreamClient(self.transport, settings.upstream.api_key)
        self.registry = stores.adapters
        self.router = router = Router(
            replica_urls,
            settings.routing,
            self.registry,
            settings.upstream.api_key,
            control_transport=transport,
            processes=lambda: self.peers.count,
        )
        isolation = TenantIsolation.from_settings(settings.isolation, key_hash_secret)
        self.safety = SafetyEngine.from_settings(settings, stores.safety_policies, self.store)
        self.safety.events.subscribe(
            lambda event: metrics.safety_action(event.rule, event.direction, event.action)
        )
        self.safety.events.subscribe(tracing.safety_action)
        self.safety.events.subscribe(note_on_request)
        self.tracing = Tracing(settings.tracing)
        drain = StreamDrain(settings.server.drain_timeout_s)
        fair_queue = settings.isolation.fair_queue
        self.responses = stores.responses
        kept = self.responses if settings.responses.store else None
        keeper = ResponseKeeper(kept, settings.responses.retention_s)
        background = BackgroundRuns(keeper)
        stages = request_stages(
            isolation, self.safety, keeper, self.limiter, settings.limits.default_max_tokens
        )
        queue = reserve = None
        if fair_queue.enabled:  # the budget is the deployment's: this process keeps its part
            reserve = open_reserve(
                store_settings.redis_url,
                store_settings.redis_prefix,
                settings.limits.redis_timeout_s,  # on the request's path, as the limiter is
                workers,
                self.peers.rank,
            )
            queue = FairQueue.from_settings(fair_queue, reserve)
            self.peers.subscribe(queue.divide)
        pipeline = InferencePipeline(
            guard,
            stages,
            queue,
            isolation,
            router,
            upstream,
            drain,
            background,
            settings.server.max_body_bytes,
            settings.server.max_audio_bytes,
        )
        models = ModelsApi(guard, upstream, router)
        self._surfaces = {surface.path: surface for surface in SURFACES}
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", surface.path): partial(pipeline, surface) for surface in SURFACES
        }
        self._routes[("GET", "/v1/models")] = models.list
        self._routes[("GET", "/healthz")] = healthz
        required = stores.all() if settings.server.readyz_requires_stores else []
        self._routes[("GET", "/readyz")] = Readiness(router, required).readyz
        serve_metrics = metrics_handler(settings)
        if serve_metrics is not None:
            self._routes[("GET", "/metrics")] = serve_metrics
        self._retrieve_model = models.retrieve
        self._stored_responses = ResponsesApi(guard, keeper)
        self._paths = {path for _, path in self._routes}
        self._admin = create_admin_app(
            AdminState(
                store=self.store,
                hasher=hasher,
                auth=AdminAuth(settings.admin.all_keys()),
                ledger=self.ledger,
                adapters=self.registry,
                router=router,
                safety_policies=self.safety.policies,
            )
        )
        access_log.configure(settings.observability)
        # Every component with a lifetime, in start order (closed in reverse): adding one is
        # adding it here (gateway/core/lifecycle.py).
        self._components: list[object] = [
            self.tracing,  # closed last: it exports the spans of the requests that drained
            self.transport,
            self.peers,
            reserve,
            self.store,
            self.registry,
            self.safety,
            router,
            self.limiter,
            self.authenticator,
            self.ledger,
            retention,
            self.responses,
            drain,
            background,  # closed first: runs cut short are stored as failed
        ]
        self._lifetime = contextlib.AsyncExitStack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"].startswith(ADMIN_PREFIX):
                await self._admin(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext.from_scope(scope)
        current_request.set(ctx)  # this task's request, for what reports on it (safety events)
        # logs the request's usage record before the bytes that deliver its answer leave
        send = delivery = self.ledger.delivery(ctx, send)
        method, path = scope["method"], scope["path"]
        handler = self._routes.get((method, path))
        if handler is None and method == "GET" and path.startswith(MODELS_PREFIX):
            handler = self._retrieve_model
        elif handler is None and path.startswith(RESPONSES_PREFIX):
            handler = self._stored_responses
        surface = self._surfaces.get(path)
        trace = (
            self.tracing.begin(ctx, scope, surface.name) if surface and method == "POST" else None
        )
        try:
            if handler is None:
                raise self._no_route(method, path)
            await handler(ctx, scope, receive, send)
        except ClientDisconnected:
            ctx.status = CLIENT_CLOSED_REQUEST
        except GatewayError as error:
            if trace is not None:
                trace.failed(error)
            status, body = (
                surface.error_response(error) if surface else (error.status, error.body())
            )
            ctx.status = status
            headers = ctx.response_headers()
            extra = [(k.encode(), v.encode()) for k, v in error.headers.items()]
            headers.extend(surface.limit_headers(extra) if surface else extra)
            await send_response(send, status, body, headers)
        except Exception:
            logger.exception("request %s failed", ctx.request_id)
            if ctx.status == 0:
                failure = InternalServerError("The gateway failed; see its log.")
                ctx.status = 500
                await send_response(send, 500, failure.body(), ctx.response_headers())
        finally:
            if trace is not None:
                trace.leave()
            if ctx.detached is not None:  # a background response: it ends with its run
                ctx.detached.add_done_callback(lambda _: self._observe(ctx, delivery, trace))
            elif ctx.endpoint:
                self._observe(ctx, delivery, trace)

    def _observe(self, ctx: RequestContext, delivery: Delivery, trace: RequestTrace | None) -> None:
        """Every finished inference request, served or refused: span, metrics, log line,
        ledger."""
        seconds = time.perf_counter() - ctx.started
        if trace is not None:
            trace.finish(ctx, seconds)
        metrics.observe_request(ctx, seconds)
        access_log.log_request(ctx, seconds)
        self.ledger.finished(delivery, seconds)

    def _no_route(self, method: str, path: str) -> GatewayError:
        if path.rstrip("/") in self._paths:
            return MethodNotAllowed(f"Method {method} is not allowed on {path}.")
        return NotFoundError(f"Unknown route: {method} {path}", "unknown_url")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for component in self._components:
                    await self._lifetime.enter_async_context(running(component))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._lifetime.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> GatewayApp:
    """Factory for uvicorn: each worker process reads the settings on its own.

    What the imports made lives as long as the process: frozen out of the collector's sight
    first, a full collection under load walks only what requests made
    (bench/results/gc-pauses.md). Before the app is built, so that the full collection this
    takes comes before the worker counts itself in the deployment's budget, not between that
    and its first accepted connection (docs/isolation.md).
    """
    gc.collect()
    gc.freeze()
    return GatewayApp(load_settings())
