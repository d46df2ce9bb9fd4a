"""Which limits a request must pass: its tenant's, and its key's where the key overrides one.

Settings defaults fill the limits a tenant leaves unset; a key's own limit replaces the
tenant's for that key, field by field. A key limit that the key does not override equals the
tenant's and is implied by it (a key's traffic is part of its tenant's), so only the tenant
scope checks it: one scope to count instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from gateway.tenancy.auth import Principal
from gateway.tenancy.models import Limits

_MAX_CACHED_PLANS = 100_000
NOT_LIMITED = -1  # how a missing limit travels to the Redis script


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """The limits counted under one scope: a tenant (``t:<id>``) or a key (``k:<id>``)."""

    scope_id: str
    label: str  # names the scope in error messages
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None
    tokens_per_day: int | None
    tokens_per_month: int | None

    def script_limits(self) -> str:
        """The five limits as the Redis scripts read them: "rpm,tpm,concurrent,day,month"."""
        return ",".join(
            str(NOT_LIMITED if value is None else value)
            for value in (
                self.requests_per_minute,
                self.tokens_per_minute,
                self.max_concurrent,
                self.tokens_per_day,
                self.tokens_per_month,
            )
        )


@dataclass(frozen=True, slots=True)
class Plan:
    tenant_id: str  # on a Redis Cluster, every scope's keys are in this tenant's slot
    scopes: tuple[ScopeLimits, ...]
    script_args: tuple[str, ...]  # per scope: its id and its limits, for the Redis scripts
    leased: bool  # some scope limits concurrency, so the reservation holds leases


def _limited(limits: Limits) -> bool:
    return any(getattr(limits, f.name) is not None for f in fields(Limits))


def _fill(limits: Limits, defaults: Limits) -> Limits:
    return Limits(
        *(
            getattr(defaults, f.name)
            if getattr(limits, f.name) is None
            else getattr(limits, f.name)
            for f in fields(Limits)
        )
    )


def _scope(scope_id: str, label: str, limits: Limits) -> ScopeLimits:
    return ScopeLimits(scope_id, label, *(getattr(limits, f.name) for f in fields(Limits)))


def plan_for(principal: Principal, defaults: Limits) -> Plan:
    tenant, key = principal.tenant, principal.key
    scopes: list[ScopeLimits] = []
    tenant_limits = _fill(tenant.limits, defaults)
    if _limited(tenant_limits):
        scopes.append(_scope(f"t:{tenant.id}", f"tenant '{tenant.name}'", tenant_limits))
    if _limited(key.limits):
        scopes.append(_scope(f"k:{key.id}", f"key '{key.name}' ({key.id})", key.limits))
    args = tuple(arg for scope in scopes for arg in (scope.scope_id, scope.script_limits()))
    leased = any(scope.max_concurrent is not None for scope in scopes)
    return Plan(tenant.id, tuple(scopes), args, leased)


class PlanCache:
    """Plans by key id, valid while the authenticator hands out the same Principal object.

    The authenticator caches principals and builds new ones when a tenant or key changes, so
    an identity check is enough to notice an admin's limit change.
    """

    def __init__(self, defaults: Limits) -> None:
        self._defaults = defaults
        self._plans: dict[str, tuple[Principal, Plan]] = {}

    def get(self, principal: Principal) -> Plan:
        cached = self._plans.get(principal.key.id)
        if cached is not None and cached[0] is principal:
            return cached[1]
        plan = plan_for(principal, self._defaults)
        if len(self._plans) >= _MAX_CACHED_PLANS:
            self._plans.clear()
        self._plans[principal.key.id] = (principal, plan)
        return plan
