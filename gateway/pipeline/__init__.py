"""The inference hot path (`InferencePipeline.__call__`), the same for every API surface.

authenticate -> read the body (the surface's codec parses it) -> the request stages (tenant
policy, isolation, input safety, limits: gateway/pipeline/stages.py) -> fair share of the
upstream -> route (replica + adapter) -> upstream call -> relay through the chunk filters
(rename, output safety, usage) -> settle. Metrics, the access log and the usage ledger see
every request at the app's error boundary (gateway/app.py), rejected ones included.

Far from every limit, the reservation's Redis round trip runs alongside the upstream call and
is awaited before the answer's first byte instead (gateway/limits/early.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext

from gateway.core.asgi import Receive, Scope, Send, header, read_body
from gateway.core.context import RequestContext
from gateway.core.filters import ChunkFilter
from gateway.isolation.fair_queue import FairQueue
from gateway.isolation.upstream_fields import TenantIsolation
from gateway.limits import Admission, estimated_usage, tokens_used
from gateway.observability import metrics, tracing
from gateway.pipeline.background import BackgroundRuns
from gateway.pipeline.relay import StreamDrain, relay_stream, relay_whole
from gateway.pipeline.stages import Call, RequestStage
from gateway.routing import Router
from gateway.surfaces import Surface
from gateway.tenancy.auth import KeyAuthenticator, Principal, presented_key
from gateway.upstream.client import UpstreamClient

# the limits' span says whether the request went upstream before Redis answered
_EARLY = {"gateway.limits.early_dispatch": True}
_NOT_EARLY = {"gateway.limits.early_dispatch": False}


class InferencePipeline:
    """Serves the inference surfaces; one instance per gateway process."""

    def __init__(
        self,
        authenticator: KeyAuthenticator | None,
        stages: Sequence[RequestStage],
        fair_queue: FairQueue | None,
        isolation: TenantIsolation,
        router: Router,
        upstream: UpstreamClient,
        drain: StreamDrain,
        background: BackgroundRuns,
        max_body_bytes: int,
        max_upload_bytes: int,
    ) -> None:
        self._authenticator = authenticator
        self._stages = tuple(stages)
        self._fair_queue = fair_queue
        self._isolation = isolation
        self._router = router
        self._upstream = upstream
        self._drain = drain
        self._background = background
        self._max_body_bytes = max_body_bytes
        self._max_upload_bytes = max_upload_bytes

    async def __call__(
        self, surface: Surface, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        ctx.endpoint, ctx.surface = surface.path, surface.name
        principal = await self._authenticate(ctx, scope)
        limit = self._max_upload_bytes if surface.uploads else self._max_body_bytes
        raw = await read_body(receive, limit)
        request = surface.parse_request(raw, header(scope, b"content-type"))
        ctx.stream, ctx.client_wants_usage = request.stream, request.client_wants_usage
        call = Call(surface, ctx, request, principal)
        for stage in self._stages:
            await stage(call)
        if call.kept is not None and call.kept.background:
            await self._background.begin(call, self._run_background, receive, send)
            return
        admission = call.admission
        try:
            if admission is not None and not admission.early:
                await _confirm(surface, ctx, admission)  # far from the limits: in _proxy instead
            async with self._fair_share(ctx, principal):
                await self._proxy(call, receive, send)
        finally:
            _settle(call)

    async def _run_background(self, call: Call, receive: Receive, send: Send) -> None:
        """A background response's run, once the client has its queued answer: the same
        upstream call, its events to the store, until it ends or is cancelled."""
        try:
            async with self._fair_share(call.ctx, call.principal):
                await self._proxy(call, receive, send)
        finally:
            _settle(call)

    def _fair_share(
        self, ctx: RequestContext, principal: Principal | None
    ) -> AbstractAsyncContextManager[object]:
        if self._fair_queue is None:
            return nullcontext()
        return self._fair_queue.slot(ctx.tenant_name or "", self._isolation.weight(principal))

    async def _proxy(self, call: Call, receive: Receive, send: Send) -> None:
        """Route to a replica (its adapter loaded), call it, relay the answer through the
        filters; an early admission is confirmed before the answer's first byte."""
        ctx, surface, target = call.ctx, call.surface, call.target
        body = surface.upstream_body(call.request, target.upstream_name if target else None)
        lease = await self._router.acquire(target, call.request.body, ctx.tenant_id)
        ctx.replica = lease.url
        if ctx.upstream_starting is not None:
            ctx.upstream_starting()
        metrics.upstream_started(lease.url)
        trace = tracing.current()
        if trace is not None:
            trace.upstream_started(ctx)
        try:
            response = await lease.send(
                lambda url: self._upstream.post(
                    ctx, url + surface.path, body, ctx.stream, call.request.content_type
                )
            )
            if trace is not None:
                trace.upstream_answered(response.status)
            if lease.url != ctx.replica:  # a connect failure moved it to another replica
                metrics.upstream_finished(ctx.replica, error=True)
                ctx.replica = lease.url
                metrics.upstream_started(lease.url)
            admission = call.admission
            if admission is not None and admission.early:
                try:
                    await _confirm(surface, ctx, admission)
                except BaseException:
                    response.close()  # refused: vLLM aborts what it started
                    raise
            filters: list[ChunkFilter] = [*call.filters, surface.usage_filter(ctx)]
            kept = call.kept
            if kept is not None:
                filters.append(kept)  # after the usage filter: it holds the answer's end
            if ctx.stream and response.status == 200:
                await relay_stream(
                    ctx, surface, response, filters, kept, self._drain, receive, send
                )
            else:
                await relay_whole(ctx, surface, self._upstream, response, filters, kept, send)
        finally:
            lease.release()
            metrics.upstream_finished(lease.url, error=ctx.status == 0 or ctx.status >= 500)
            if trace is not None:
                trace.upstream_finished(ctx)

    async def _authenticate(self, ctx: RequestContext, scope: Scope) -> Principal | None:
        if self._authenticator is None:
            return None
        principal = await self._authenticator.authenticate(presented_key(scope))
        ctx.tenant_id, ctx.tenant_name = principal.tenant.id, principal.tenant.name
        ctx.key_id = principal.key.id
        return principal


async def _confirm(surface: Surface, ctx: RequestContext, admission: Admission) -> None:
    """The limits' answer (a 429 or 503 raises), and its x-ratelimit-* headers (as the
    surface names them)."""
    with tracing.span("gateway.limits", _EARLY if admission.early else _NOT_EARLY):
        reservation = await admission.confirmed()
    ctx.extra_headers.extend(surface.limit_headers(reservation.headers))


def _settle(call: Call) -> None:
    """Charge what the request really used: vLLM's usage, or what a cut stream relayed."""
    ctx = call.ctx
    if ctx.usage is None and ctx.streamed_events:
        prompt = call.surface.estimate_prompt_tokens(call.request)
        ctx.usage = estimated_usage(prompt, ctx.streamed_events)
    if call.admission is not None:
        call.admission.settle(tokens_used(ctx.usage))
