"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: vLLM answers too)."""

from __future__ import annotations

from gateway.asgi import Receive, Scope, Send, send_response
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.routing import Router
from gateway.upstream.transport import UpstreamTransport


async def healthz(ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
    await send_response(send, 200, b'{"status":"alive"}', ctx.response_headers())


class Readiness:
    def __init__(self, transport: UpstreamTransport, router: Router) -> None:
        self._transport = transport
        self._router = router

    async def readyz(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        for replica in self._router.replicas:
            if await self._transport.probe(replica.url + "/health"):
                await send_response(send, 200, b'{"status":"ready"}', ctx.response_headers())
                return
        raise GatewayError(
            503, "No model server is reachable.", "upstream_error", None, "upstream_unavailable"
        )
