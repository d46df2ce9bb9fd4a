"""The inference hot path, one stage per line.

authenticate -> read and parse the body -> tenant policy (model) -> rate-limit reservation ->
route (replica) -> upstream call -> relay (stream or whole, usage captured) -> settle.
Metrics, the access log and the usage ledger see every request at the app's error boundary
(gateway/app.py), rejected ones included.
"""

from __future__ import annotations

from gateway.asgi import Receive, Scope, Send, header, read_body
from gateway.context import RequestContext
from gateway.limits import Limiter, estimate_prompt_tokens, estimate_tokens, tokens_used
from gateway.observability import access_log, metrics
from gateway.pipeline.body import Endpoint, InferenceRequest, parse_request, upstream_body
from gateway.pipeline.relay import estimated_usage, relay_stream, relay_whole
from gateway.pipeline.tenant_policy import resolve_model
from gateway.routing import ModelTarget, Router
from gateway.settings import Settings
from gateway.tenancy.auth import KeyAuthenticator, Principal
from gateway.upstream.transport import UpstreamTransport


class InferencePipeline:
    """Serves the inference endpoints; one instance per gateway process."""

    def __init__(
        self,
        settings: Settings,
        authenticator: KeyAuthenticator | None,
        limiter: Limiter,
        transport: UpstreamTransport,
        router: Router,
    ) -> None:
        self._authenticator = authenticator
        self._limiter = limiter
        self._transport = transport
        self._router = router
        self._max_body_bytes = settings.server.max_body_bytes
        self._default_max_tokens = settings.limits.default_max_tokens

    async def __call__(
        self, endpoint: Endpoint, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        ctx.endpoint = endpoint.path
        principal = await self._authenticate(ctx, scope)
        request = parse_request(endpoint, await read_body(receive, self._max_body_bytes))
        ctx.stream, ctx.client_wants_usage = request.stream, request.client_wants_usage
        access_log.log_prompt(ctx, request.raw)
        target = self._resolve_model(ctx, principal, request)
        reservation = None
        if principal is not None:
            estimate = estimate_tokens(request, self._default_max_tokens)
            reservation = await self._limiter.reserve(principal, estimate)
            ctx.extra_headers.extend(reservation.headers)
        replica = self._router.route(target)
        ctx.replica = replica.url
        metrics.upstream_started(replica.url)
        try:
            upstream_model = target.upstream_name if target else None
            response = await self._transport.post(
                ctx, replica.url + endpoint.path, upstream_body(request, upstream_model), ctx.stream
            )
            rename = target.response_rename() if target else None
            if ctx.stream and response.status == 200:
                await relay_stream(ctx, response, rename, receive, send)
            else:
                await relay_whole(ctx, self._transport, response, rename, send)
        finally:
            metrics.upstream_finished(replica.url, error=ctx.status == 0 or ctx.status >= 500)
            prompt = estimate_prompt_tokens(request)
            if ctx.usage is None and ctx.streamed_events:
                ctx.usage = estimated_usage(prompt, ctx.streamed_events)
            if reservation is not None:
                self._limiter.settle(reservation, tokens_used(ctx.usage, prompt, 0))

    async def _authenticate(self, ctx: RequestContext, scope: Scope) -> Principal | None:
        if self._authenticator is None:
            return None
        principal = await self._authenticator.authenticate(header(scope, b"authorization"))
        ctx.tenant_id, ctx.tenant_name = principal.tenant.id, principal.tenant.name
        ctx.key_id = principal.key.id
        return principal

    @staticmethod
    def _resolve_model(
        ctx: RequestContext, principal: Principal | None, request: InferenceRequest
    ) -> ModelTarget | None:
        if principal is None:  # authentication off: names pass through
            ctx.public_model = ctx.upstream_model = request.model
            return None
        target = resolve_model(principal, request.model)
        ctx.public_model, ctx.upstream_model = target.public_name, target.upstream_name
        return target
