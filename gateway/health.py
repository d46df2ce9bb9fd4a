"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: requests would route).

Readiness is the router's own view of the replicas, not a probe of its own: a load balancer
that sees 200 must not then get 503 "none of the replicas passes its health checks" because
the router has not re-admitted a replica yet. The stores count only where configured
(`server.readyz_requires_stores`): recently validated keys keep working while a store is away.
"""

from __future__ import annotations

import contextlib

from gateway.core.asgi import Receive, Scope, Send, send_response
from gateway.core.context import RequestContext
from gateway.core.errors import StoreUnavailable, UpstreamUnavailable
from gateway.routing import Router
from gateway.store_health import CheckableStore


async def healthz(ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
    await send_response(send, 200, b'{"status":"alive"}', ctx.response_headers())


class Readiness:
    def __init__(self, router: Router, required_stores: list[CheckableStore]) -> None:
        self._router = router
        self._required_stores = required_stores

    async def readyz(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        if not any(replica.healthy for replica in self._router.replicas):
            raise UpstreamUnavailable("no replica passes its health checks")
        for store in self._required_stores:
            if not store.health.available:  # seen down: has it come back since?
                with contextlib.suppress(StoreUnavailable):
                    await store.ping()
                if not store.health.available:
                    raise store.health.unavailable()
        await send_response(send, 200, b'{"status":"ready"}', ctx.response_headers())
