"""The gateway's ASGI application: a route table, the lifespan, and the error boundary.

Dispatch is a dict lookup on (method, path) rather than a framework router: every request
pays for it, and the gateway serves a handful of fixed paths. The admin API (FastAPI, off the
hot path) receives every path under /admin/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from gateway.admin.api import create_admin_app
from gateway.admin.usage_api import attach_usage
from gateway.core.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    call_after_shutdown_signal,
    send_response,
)
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.core.request import Endpoint
from gateway.core.status import CLIENT_CLOSED_REQUEST
from gateway.health import Readiness, healthz
from gateway.isolation.upstream_fields import TenantIsolation
from gateway.limits import open_limiter
from gateway.models_api import MODELS_PREFIX, ModelsApi
from gateway.observability import access_log, metrics
from gateway.observability.exposition import metrics_handler
from gateway.pipeline import InferencePipeline
from gateway.pipeline.relay import in_flight_streams
from gateway.replicas.discovery import configured_urls
from gateway.routing import Router
from gateway.safety.engine import SafetyEngine
from gateway.settings import Settings, load_settings
from gateway.stores import open_stores
from gateway.tenancy.auth import KeyAuthenticator
from gateway.tenancy.secrets import KeyHasher, server_secret
from gateway.upstream.transport import UpstreamTransport
from gateway.usage.ledger import UsageLedger

Handler = Callable[[RequestContext, Scope, Receive, Send], Awaitable[None]]
logger = logging.getLogger("gateway")
ADMIN_PREFIX = "/admin/"


class GatewayApp:
    def __init__(self, settings: Settings) -> None:
        replica_urls = configured_urls(settings.upstream)
        if not replica_urls:
            raise ValueError("no upstream: set upstream.url or upstream.replicas")
        self.settings = settings
        store_settings = settings.store
        stores = open_stores(store_settings)
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
        self.limiter = open_limiter(settings.limits, store_settings)
        usage = settings.usage
        self.ledger = UsageLedger(stores.usage, usage.flush_interval_s, usage.max_pending_entries)
        self.transport = UpstreamTransport(settings.upstream)
        self.registry = stores.adapters
        self.router = router = Router(
            replica_urls, settings.routing, self.registry, settings.upstream.api_key
        )
        isolation = TenantIsolation.from_settings(settings.isolation, key_hash_secret)
        self.safety = SafetyEngine.from_settings(settings, stores.safety_policies, self.store)
        self.safety.events.subscribe(
            lambda event: metrics.safety_action(event.rule, event.direction, event.action)
        )
        pipeline = InferencePipeline(
            settings, guard, isolation, self.safety, self.limiter, self.transport, router
        )
        models = ModelsApi(guard, self.transport, router)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", endpoint.path): partial(pipeline, endpoint) for endpoint in Endpoint
        }
        self._routes[("GET", "/v1/models")] = models.list
        self._routes[("GET", "/healthz")] = healthz
        required = stores.all() if settings.server.readyz_requires_stores else []
        self._routes[("GET", "/readyz")] = Readiness(router, required).readyz
        serve_metrics = metrics_handler(settings)
        if serve_metrics is not None:
            self._routes[("GET", "/metrics")] = serve_metrics
        self._retrieve_model = models.retrieve
        self._paths = {path for _, path in self._routes}
        self._admin = create_admin_app(self.store, hasher, settings.admin.all_keys())
        attach_usage(self._admin, self.ledger)
        self._admin.state.adapters = self.registry
        self._admin.state.router = router
        self._admin.state.safety_policies = self.safety.policies
        access_log.configure(settings.observability)
        self._background: list[asyncio.Task[None]] = []

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
        method, path = scope["method"], scope["path"]
        handler = self._routes.get((method, path))
        if handler is None and method == "GET" and path.startswith(MODELS_PREFIX):
            handler = self._retrieve_model
        try:
            if handler is None:
                raise self._no_route(method, path)
            await handler(ctx, scope, receive, send)
        except ClientDisconnected:
            ctx.status = CLIENT_CLOSED_REQUEST
        except GatewayError as error:
            ctx.status = error.status
            headers = ctx.response_headers()
            headers.extend((k.encode(), v.encode()) for k, v in error.headers.items())
            await send_response(send, error.status, error.body(), headers)
        except Exception:
            logger.exception("request %s failed", ctx.request_id)
            if ctx.status == 0:
                failure = GatewayError(500, "The gateway failed; see its log.", "server_error")
                ctx.status = 500
                await send_response(send, 500, failure.body(), ctx.response_headers())
        finally:
            if ctx.endpoint:
                self._observe(ctx)

    def _observe(self, ctx: RequestContext) -> None:
        """Every finished inference request, served or refused: metrics, log line, ledger."""
        seconds = time.perf_counter() - ctx.started
        metrics.observe_request(ctx, seconds)
        access_log.log_request(ctx, seconds)
        usage = ctx.usage or {}
        self.ledger.record(
            ctx.tenant_id,
            ctx.key_id,
            ctx.public_model,
            usage.get("prompt_tokens") or 0,
            usage.get("completion_tokens") or 0,
            ctx.status,
        )

    def _no_route(self, method: str, path: str) -> GatewayError:
        if path.rstrip("/") in self._paths:
            return GatewayError(405, f"Method {method} is not allowed on {path}.")
        return GatewayError(404, f"Unknown route: {method} {path}", code="unknown_url")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.transport.start()
                await self.limiter.start()
                await self.router.start()
                await self.safety.start()
                self._background = [
                    asyncio.create_task(self.authenticator.run_background()),
                    asyncio.create_task(self.ledger.run()),
                    asyncio.create_task(self.safety.run_background()),
                ]
                drain_s = self.settings.server.drain_timeout_s
                call_after_shutdown_signal(drain_s, in_flight_streams.end_all)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _shutdown(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.authenticator.flush_last_used()
        await self.ledger.close()
        await self.limiter.close()
        await self.router.close()
        await self.registry.close()
        await self.safety.close()
        await self.store.close()
        await self.transport.close()


def create_app() -> GatewayApp:
    """Factory for uvicorn: each worker process reads the settings on its own."""
    return GatewayApp(load_settings())
