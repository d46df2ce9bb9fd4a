"""The gateway's ASGI application: a route table, the lifespan, and the error boundary.

Dispatch is a dict lookup on (method, path) rather than a framework router: every request
pays for it, and the gateway serves a handful of fixed paths.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from gateway.asgi import Receive, Scope, Send, send_response
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.health import Readiness, healthz
from gateway.models_api import MODELS_PREFIX, ModelsApi
from gateway.pipeline import InferencePipeline
from gateway.pipeline.body import Endpoint
from gateway.routing import Replica, Router
from gateway.settings import Settings, load_settings
from gateway.upstream.transport import UpstreamTransport

Handler = Callable[[RequestContext, Scope, Receive, Send], Awaitable[None]]
logger = logging.getLogger("gateway")


class GatewayApp:
    def __init__(self, settings: Settings) -> None:
        if settings.upstream.url is None:
            raise ValueError("upstream.url is not set (VLLM_GATEWAY_UPSTREAM__URL)")
        self.settings = settings
        self.transport = UpstreamTransport(settings.upstream)
        router = Router([Replica(str(settings.upstream.url).rstrip("/"))])
        pipeline = InferencePipeline(self.transport, router, settings.server.max_body_bytes)
        models = ModelsApi(self.transport, router)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", endpoint.path): partial(pipeline, endpoint) for endpoint in Endpoint
        }
        self._routes[("GET", "/v1/models")] = models.list
        self._routes[("GET", "/healthz")] = healthz
        self._routes[("GET", "/readyz")] = Readiness(self.transport, router).readyz
        self._retrieve_model = models.retrieve
        self._paths = {path for _, path in self._routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
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
        except GatewayError as error:
            ctx.status = error.status
            headers = ctx.response_headers()
            headers.extend((k.encode(), v.encode()) for k, v in error.headers.items())
            await send_response(send, error.status, error.body(), headers)
        except Exception:
            logger.exception("request %s failed", ctx.request_id)
            if ctx.status == 0:
                error = GatewayError(500, "The gateway failed; see its log.", "server_error")
                await send_response(send, 500, error.body(), ctx.response_headers())

    def _no_route(self, method: str, path: str) -> GatewayError:
        if path.rstrip("/") in self._paths:
            return GatewayError(405, f"Method {method} is not allowed on {path}.")
        return GatewayError(404, f"Unknown route: {method} {path}", code="unknown_url")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.transport.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.transport.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> GatewayApp:
    """Factory for uvicorn: each worker process reads the settings on its own."""
    return GatewayApp(load_settings())
