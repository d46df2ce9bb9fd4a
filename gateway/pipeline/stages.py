"""The request stages: what runs between reading a request and calling the upstream.

A stage is anything with ``async def __call__(call: Call) -> None`` (`RequestStage`): it reads
what earlier stages put on the `Call`, adds its own outcome there, or raises a `GatewayError`
to refuse the request. The pipeline runs them in list order; adding one is adding it to the
list `request_stages` builds (learned from Bifrost's PreLLMHook). What does not fit a uniform
hook stays explicit in the pipeline: authentication (before the body is read), the limits'
confirm and settle (they bracket the upstream call), the fair share (a slot held around it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.core.context import RequestContext
from gateway.core.filters import ChunkFilter
from gateway.core.request import InferenceRequest
from gateway.isolation.upstream_fields import TenantIsolation, strip_client_fields
from gateway.limits import Admission, Limiter
from gateway.observability import access_log, tracing
from gateway.pipeline.tenant_policy import resolve_model
from gateway.routing import ModelTarget
from gateway.safety.engine import SafetyEngine
from gateway.surfaces import Surface
from gateway.surfaces.responses_state import KeptResponse, ResponseKeeper
from gateway.tenancy.auth import Principal


@dataclass(slots=True)
class Call:
    """One inference request on its way through the stages: what each one learned."""

    surface: Surface
    ctx: RequestContext
    request: InferenceRequest
    principal: Principal | None
    target: ModelTarget | None = None
    # run on the answer in this order (gateway/core/filters.py); the usage filter is last
    filters: list[ChunkFilter] = field(default_factory=list)
    admission: Admission | None = None
    kept: KeptResponse | None = None  # the gateway keeps the answer (surface.keeps_state)


class RequestStage(Protocol):
    async def __call__(self, call: Call) -> None: ...


class ResolveModel:
    """Tenant policy: the public model name -> the route behind it (404 for names the
    tenant does not have); vLLM's name is swapped back in the answer."""

    async def __call__(self, call: Call) -> None:
        ctx, principal, request = call.ctx, call.principal, call.request
        if principal is None:  # authentication off: names pass through
            ctx.public_model = ctx.upstream_model = request.model
            return
        target = call.target = resolve_model(principal, request.model)
        ctx.public_model, ctx.upstream_model = target.public_name, target.upstream_name
        ctx.base_model, ctx.adapter = target.route.base_model, target.route.adapter
        rename = target.response_rename()
        if rename is not None:
            call.filters.append(rename)


class IsolateTenant:
    """vLLM's cache_salt and priority come from the tenant, never from the client."""

    def __init__(self, isolation: TenantIsolation) -> None:
        self._isolation = isolation

    async def __call__(self, call: Call) -> None:
        request = call.request
        request.changed = strip_client_fields(request.body)
        if call.principal is not None and call.surface.tenant_fields:
            request.body.update(self._isolation.body_fields(call.principal))
            request.changed = True


class CheckInput:
    """The tenant's safety policy on the prompt (block, redact, mask), and its output guard
    on the answer."""

    def __init__(self, safety: SafetyEngine) -> None:
        self._safety = safety

    async def __call__(self, call: Call) -> None:
        policy = self._safety.for_request(call.principal)
        if policy is None:
            return
        if await policy.check_input(call.surface.texts(call.request)):
            call.request.changed = True
        guard = call.surface.output_guard(policy)
        if guard is not None:
            call.filters.append(guard)


class KeepState:
    """The gateway's Responses API state: a continued conversation expanded, the answer
    stored (gateway/surfaces/responses_state.py). Before the input check, which then reads
    the whole conversation vLLM gets: the answers stored as the client saw them (a masked
    value restored) are masked again, and what is stored is what the check left."""

    def __init__(self, keeper: ResponseKeeper) -> None:
        self._keeper = keeper

    async def __call__(self, call: Call) -> None:
        if call.surface.keeps_state:
            call.kept = await self._keeper.prepare(call.request, call.ctx.tenant_id or "")


class LogPrompt:
    """Debug only (`observability.log_prompts`): the prompt as it goes upstream."""

    async def __call__(self, call: Call) -> None:
        access_log.log_prompt(call.ctx, call.request.body)


class CaptureContent:
    """Tracing's content capture (`tracing.capture_content`, sampled requests only): the
    prompt as it goes upstream and the answer as relayed, both after the tenant's safety
    policy (so redacted where it redacts): this stage runs after the input check, and its
    filter after the output guard."""

    async def __call__(self, call: Call) -> None:
        trace = tracing.current()
        if trace is not None and trace.captures_content:
            trace.capture_prompt(call.surface.texts(call.request))
            call.filters.append(trace.answer_capture())


class Admit:
    """The limits' reservation for the request's estimate (answered before the first byte)."""

    def __init__(self, limiter: Limiter, default_max_tokens: int) -> None:
        self._limiter = limiter
        self._default_max_tokens = default_max_tokens

    async def __call__(self, call: Call) -> None:
        if call.principal is None:
            return
        estimate = call.surface.estimate_tokens(call.request, self._default_max_tokens)
        call.admission = self._limiter.admit(call.principal, estimate)


def request_stages(
    isolation: TenantIsolation,
    safety: SafetyEngine,
    keeper: ResponseKeeper,
    limiter: Limiter,
    default_max_tokens: int,
) -> list[RequestStage]:
    """tenant policy -> isolation -> input safety -> kept state -> (prompt log, traced
    content) -> limits."""
    return [
        ResolveModel(),
        IsolateTenant(isolation),
        KeepState(keeper),
        CheckInput(safety),
        LogPrompt(),
        CaptureContent(),
        Admit(limiter, default_max_tokens),
    ]
