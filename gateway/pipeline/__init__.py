"""The inference hot path, one stage per line (`InferencePipeline.__call__`).

authenticate -> read and parse the body -> tenant policy (model) -> tenant isolation
(cache salt, priority) -> input safety -> rate-limit reservation -> fair share of the
upstream -> route (replica + adapter) -> upstream call -> relay (stream or whole; output
safety, usage) -> settle. Metrics, the access log and the usage ledger see every request at
the app's error boundary (gateway/app.py), rejected ones included.

Far from every limit, the reservation's Redis round trip runs alongside the upstream call and
is awaited before the answer's first byte instead (gateway/limits/early.py).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext

from gateway.core.asgi import Receive, Scope, Send, header, read_body
from gateway.core.context import RequestContext
from gateway.core.request import Endpoint, InferenceRequest
from gateway.isolation.fair_queue import FairQueue
from gateway.isolation.upstream_fields import TenantIsolation, strip_client_fields
from gateway.limits import (
    Admission,
    Limiter,
    estimate_prompt_tokens,
    estimate_tokens,
    estimated_usage,
    tokens_used,
)
from gateway.observability import access_log, metrics
from gateway.pipeline.body import parse_request, upstream_body
from gateway.pipeline.relay import relay_stream, relay_whole
from gateway.pipeline.tenant_policy import resolve_model
from gateway.routing import ModelTarget, Router
from gateway.safety.engine import SafetyEngine
from gateway.safety.output_guard import OutputGuard
from gateway.settings import Settings
from gateway.tenancy.auth import KeyAuthenticator, Principal
from gateway.upstream.transport import UpstreamTransport


class InferencePipeline:
    """Serves the inference endpoints; one instance per gateway process."""

    def __init__(
        self,
        settings: Settings,
        authenticator: KeyAuthenticator | None,
        isolation: TenantIsolation,
        safety: SafetyEngine,
        limiter: Limiter,
        transport: UpstreamTransport,
        router: Router,
    ) -> None:
        self._authenticator = authenticator
        self._isolation = isolation
        self._safety = safety
        fair_queue = settings.isolation.fair_queue
        self._fair_queue = FairQueue.from_settings(fair_queue) if fair_queue.enabled else None
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
        target = self._resolve_model(ctx, principal, request)
        self._isolate(request, principal)
        guard = await self._check_input(request, principal)
        access_log.log_prompt(ctx, request.body)
        admission = self._admit(principal, request)
        try:
            if admission is not None and not admission.early:
                await self._confirm(ctx, admission)  # far from the limits: in _proxy instead
            async with self._fair_share(ctx, principal):
                await self._proxy(ctx, endpoint, request, target, guard, receive, send, admission)
        finally:
            self._settle(ctx, request, admission)

    def _isolate(self, request: InferenceRequest, principal: Principal | None) -> None:
        """vLLM's cache_salt and priority come from the tenant, never from the client."""
        request.changed = strip_client_fields(request.body)
        if principal is not None and request.endpoint is not Endpoint.EMBEDDINGS:
            request.body.update(self._isolation.body_fields(principal))
            request.changed = True

    async def _check_input(
        self, request: InferenceRequest, principal: Principal | None
    ) -> OutputGuard | None:
        """The tenant's safety policy on the prompt (block, redact, mask); its output guard."""
        policy = self._safety.for_request(principal)
        if policy is None:
            return None
        if await policy.check_input(request):
            request.changed = True
        if request.endpoint is Endpoint.EMBEDDINGS:  # vectors: no text to guard
            return None
        return policy.output_guard()

    def _fair_share(
        self, ctx: RequestContext, principal: Principal | None
    ) -> AbstractAsyncContextManager[object]:
        if self._fair_queue is None:
            return nullcontext()
        return self._fair_queue.slot(ctx.tenant_name or "", self._isolation.weight(principal))

    async def _proxy(
        self,
        ctx: RequestContext,
        endpoint: Endpoint,
        request: InferenceRequest,
        target: ModelTarget | None,
        guard: OutputGuard | None,
        receive: Receive,
        send: Send,
        admission: Admission | None,
    ) -> None:
        """Route to a replica (its adapter loaded), call it, relay the answer (output safety);
        an early admission is confirmed before the answer's first byte."""
        body = upstream_body(request, target.upstream_name if target else None)
        lease = await self._router.acquire(target)
        ctx.replica = lease.url
        metrics.upstream_started(lease.url)
        try:
            response = await lease.send(
                lambda url: self._transport.post(ctx, url + endpoint.path, body, ctx.stream)
            )
            if lease.url != ctx.replica:  # a connect failure moved it to another replica
                metrics.upstream_finished(ctx.replica, error=True)
                ctx.replica = lease.url
                metrics.upstream_started(lease.url)
            if admission is not None and admission.early:
                try:
                    await self._confirm(ctx, admission)
                except BaseException:
                    response.close()  # refused: vLLM aborts what it started
                    raise
            rename = target.response_rename() if target else None
            if ctx.stream and response.status == 200:
                await relay_stream(ctx, response, rename, guard, receive, send)
            else:
                await relay_whole(ctx, self._transport, response, rename, guard, send)
        finally:
            lease.release()
            metrics.upstream_finished(lease.url, error=ctx.status == 0 or ctx.status >= 500)

    def _admit(self, principal: Principal | None, request: InferenceRequest) -> Admission | None:
        if principal is None:
            return None
        return self._limiter.admit(principal, estimate_tokens(request, self._default_max_tokens))

    @staticmethod
    async def _confirm(ctx: RequestContext, admission: Admission) -> None:
        """The limits' answer (a 429 or 503 raises), and its x-ratelimit-* headers."""
        reservation = await admission.confirmed()
        ctx.extra_headers.extend(reservation.headers)

    @staticmethod
    def _settle(
        ctx: RequestContext, request: InferenceRequest, admission: Admission | None
    ) -> None:
        """Charge what the request really used: vLLM's usage, or what a cut stream relayed."""
        if ctx.usage is None and ctx.streamed_events:
            ctx.usage = estimated_usage(estimate_prompt_tokens(request), ctx.streamed_events)
        if admission is not None:
            admission.settle(tokens_used(ctx.usage))

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
