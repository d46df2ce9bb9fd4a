"""Reconciliation: the shared limiter's token budgets against the ledger, per tenant and key.

Two independent counts of the same tokens: the limiter charges each request to its scopes'
budget counters in Redis (its estimate at admission, corrected to vLLM's usage when it
settles: gateway/limits/counters.py), and the ledger stores each request's record. Over a
closed period they agree; where they do not, one side lost something (a ledger that dropped
records, settlements that never reached Redis, a gateway that fell back to its in-process
limiter during a Redis outage, Redis data lost or edited).

Compared: each scope with a daily token budget now, day by day (the tenant's counter against
the ledger's tokens of all its keys, a key with a budget of its own against its own), and each
scope with a monthly budget, month by month over the whole months the days fall in. A scope
without a daily budget keeps estimates in its day fields, so only the counters of the budgets
set are compared. Expect small differences where requests are still running or the ledger has
not flushed yet (at most `usage.flush_interval_s`), and at midnight, where the limiter books a
request on the day it started and the ledger on the day it ended.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from gateway.limits.counters import KEPT_AFTER_MONTH_S, BudgetCounters, day_field, month_field
from gateway.limits.plan import ScopeLimits, plan_for
from gateway.tenancy.auth import Principal
from gateway.tenancy.models import ApiKey, Limits, Tenant
from gateway.tenancy.store import Store
from gateway.usage.backend import UsageBackend, UsageFilter

KEYS_PER_READ = 1000


@dataclass(frozen=True, slots=True)
class Comparison:
    """One budget counter against the ledger's tokens for the same period and scope."""

    period: str  # a UTC day, YYYY-MM-DD (a daily budget), or month, YYYY-MM (a monthly one)
    tenant_id: str
    key_id: str | None  # None: the tenant's counter, which all its keys are charged to
    limiter: int | None  # None: the counter is gone (expired with its month), not compared
    ledger: int  # prompt + completion tokens

    @property
    def difference(self) -> int | None:
        """Limiter minus ledger: positive, the ledger lacks tokens the limiter charged."""
        return None if self.limiter is None else self.limiter - self.ledger


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a counter may be from the ledger: `tokens`, or `fraction` of the ledger's."""

    tokens: int = 0
    fraction: float = 0.0

    def exceeded_by(self, comparison: Comparison) -> bool:
        difference = comparison.difference
        if difference is None:
            return False
        return abs(difference) > max(self.tokens, self.fraction * comparison.ledger)


@dataclass(frozen=True, slots=True)
class _Scope:
    tenant_id: str
    key_id: str | None
    limits: ScopeLimits


async def reconcile(
    keys: Store,
    usage: UsageBackend,
    counters: BudgetCounters,
    defaults: Limits,
    first_day: str,
    last_day: str,
    tenant_id: str | None = None,
    now: float | None = None,
) -> list[Comparison]:
    """The budget counters of every tenant (or of `tenant_id`) and of its keys, for the UTC
    days from `first_day` to `last_day` (and their months), against the ledger; ordered by
    period, tenant, then key (the tenant's counter first). LookupError: no such tenant."""
    days = _days(first_day, last_day)
    months = sorted({day[:7] for day in days})
    scopes = await _budget_scopes(keys, defaults, tenant_id)
    fields = [day_field(day) for day in days] + [month_field(month) for month in months]
    charged = await counters.read(
        [(scope.tenant_id, scope.limits.scope_id) for scope in scopes], fields
    )
    ledger = await _ledger_tokens(usage, tenant_id, months)
    kept_from = _oldest_kept_month(time.time() if now is None else now)
    comparisons = []
    for scope, fields_found in zip(scopes, charged, strict=True):
        periods = days if scope.limits.tokens_per_day is not None else []
        if scope.limits.tokens_per_month is not None:
            periods = periods + months
        for period in periods:
            field = day_field(period) if len(period) > 7 else month_field(period)
            tokens = fields_found.get(field)
            if tokens is None and period[:7] >= kept_from:
                tokens = 0  # its month's counters are all kept yet: nothing was charged
            ledger_tokens = ledger[period, scope.tenant_id, scope.key_id]
            comparisons.append(
                Comparison(period, scope.tenant_id, scope.key_id, tokens, ledger_tokens)
            )
    comparisons.sort(key=lambda c: (c.period, c.tenant_id, c.key_id or ""))
    return comparisons


def _days(first_day: str, last_day: str) -> list[str]:
    first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
    if first > last:
        raise ValueError(f"from ({first_day}) is after to ({last_day})")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


async def _budget_scopes(keys: Store, defaults: Limits, tenant_id: str | None) -> list[_Scope]:
    """The scopes with a token budget, as the limiter plans them now: a tenant's (its limits
    filled with the defaults), and each key's that sets a budget of its own."""
    if tenant_id is None:
        tenants = await keys.list_tenants()
    else:
        tenant = await keys.get_tenant(tenant_id)
        if tenant is None:
            raise LookupError(f"no tenant with id '{tenant_id}'")
        tenants = [tenant]
    scopes: dict[str, _Scope] = {}
    for tenant in tenants:
        tenant_scope = f"t:{tenant.id}"
        for key in await _all_keys(keys, tenant):
            for limits in plan_for(Principal.of(key, tenant), defaults).scopes:
                if limits.tokens_per_day is None and limits.tokens_per_month is None:
                    continue
                key_id = None if limits.scope_id == tenant_scope else key.id
                scopes.setdefault(limits.scope_id, _Scope(tenant.id, key_id, limits))
    return list(scopes.values())


async def _all_keys(keys: Store, tenant: Tenant) -> list[ApiKey]:
    found: list[ApiKey] = []
    while batch := await keys.list_keys(tenant.id, len(found), KEYS_PER_READ):
        found += batch
        if len(batch) < KEYS_PER_READ:
            break
    return found


async def _ledger_tokens(
    usage: UsageBackend, tenant_id: str | None, months: list[str]
) -> Counter[tuple[str, str, str | None]]:
    """Tokens per (day or month, tenant, key), and per (day or month, tenant, None), over the
    whole months."""
    last = date.fromisoformat(f"{months[-1]}-01")
    next_month = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    rows = await usage.read(
        UsageFilter(
            tenant_id=tenant_id,
            first_day=f"{months[0]}-01",
            last_day=(next_month - timedelta(days=1)).isoformat(),
        )
    )
    tokens: Counter[tuple[str, str, str | None]] = Counter()
    for key, counts in rows:
        total = counts.prompt_tokens + counts.completion_tokens
        for period in (key.day, key.day[:7]):
            tokens[period, key.tenant_id, key.key_id] += total
            tokens[period, key.tenant_id, None] += total
    return tokens


def _oldest_kept_month(now: float) -> str:
    """The oldest month (YYYY-MM) whose counters are all still in Redis: the limiter keeps a
    month's until KEPT_AFTER_MONTH_S after it ends."""
    return datetime.fromtimestamp(now - KEPT_AFTER_MONTH_S, UTC).strftime("%Y-%m")
