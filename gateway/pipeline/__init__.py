"""The inference hot path, one stage per line.

authenticate -> read body -> parse -> tenant policy (model) -> route (replica) -> call upstream
-> relay (stream or whole). Safety, rate-limit reservation and usage settlement join this
sequence as their own stage modules.
"""

from __future__ import annotations

from gateway.asgi import ClientDisconnected, Receive, Scope, Send, header, read_body
from gateway.context import RequestContext
from gateway.pipeline.body import Endpoint, parse_request, upstream_body
from gateway.pipeline.relay import CLIENT_CLOSED_REQUEST, relay_stream, relay_whole
from gateway.pipeline.tenant_policy import resolve_model
from gateway.routing import Router
from gateway.tenancy.auth import KeyAuthenticator
from gateway.upstream.transport import UpstreamTransport


class InferencePipeline:
    """Serves the inference endpoints; one instance per gateway process."""

    def __init__(
        self,
        authenticator: KeyAuthenticator | None,
        transport: UpstreamTransport,
        router: Router,
        max_body_bytes: int,
    ) -> None:
        self._authenticator = authenticator
        self._transport = transport
        self._router = router
        self._max_body_bytes = max_body_bytes

    async def __call__(
        self, endpoint: Endpoint, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        ctx.endpoint = endpoint.path
        principal = None
        if self._authenticator is not None:
            principal = await self._authenticator.authenticate(header(scope, b"authorization"))
        try:
            raw = await read_body(receive, self._max_body_bytes)
        except ClientDisconnected:
            ctx.status = CLIENT_CLOSED_REQUEST
            return
        request = parse_request(endpoint, raw)
        ctx.stream, ctx.client_wants_usage = request.stream, request.client_wants_usage
        target = resolve_model(principal, request.model) if principal else None
        replica = self._router.route(target)
        response = await self._transport.post(
            ctx,
            replica.url + endpoint.path,
            upstream_body(request, target.upstream_name if target else None),
            request.stream,
        )
        rename = target.response_rename() if target else None
        if request.stream and response.status == 200:
            await relay_stream(ctx, response, rename, receive, send)
        else:
            await relay_whole(ctx, self._transport, response, rename, send)
