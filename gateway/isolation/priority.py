"""Tiers: which one a request runs at, and what that means to vLLM and the fair queue.

A tenant names its tier in metadata `tier`; a key's metadata `tier` overrides it, so one
tenant can keep, say, a batch key next to its interactive ones. A tier the settings do not
know counts as the default tier, so a typo in metadata cannot lift a tenant above others.
"""

from __future__ import annotations

from gateway.settings import IsolationSettings
from gateway.tenancy.auth import Principal


class Tiers:
    def __init__(self, settings: IsolationSettings) -> None:
        self._default = settings.default_tier
        self._priorities = dict(settings.tier_priorities)
        self._weights = dict(settings.tier_weights)

    def tier(self, principal: Principal | None) -> str:
        if principal is None:
            return self._default
        tier = principal.key.metadata.get("tier") or principal.tenant.metadata.get("tier")
        return tier if tier in self._priorities else self._default

    def priority(self, tier: str) -> int:
        """vLLM's request priority: lower values are scheduled first."""
        return self._priorities[tier]

    def weight(self, tier: str) -> float:
        """The tier's share of the fair queue's budget, relative to the other tiers."""
        return self._weights[tier]
