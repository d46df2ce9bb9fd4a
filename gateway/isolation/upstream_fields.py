"""The fields the gateway sets in every upstream body for isolation, and strips from clients.

`cache_salt` and `priority` decide whose prefix-cache entries a request may reuse and how
early vLLM schedules it; a client that could set them could read another tenant's cache or
jump the queue, so only the gateway sets them, from the tenant's settings.
"""

from __future__ import annotations

from typing import Any

from gateway.isolation.cache_salt import CacheSalter, derive_secret, salt_mode
from gateway.isolation.priority import Tiers
from gateway.observability import metrics
from gateway.settings import IsolationSettings
from gateway.tenancy.auth import Principal

GATEWAY_FIELDS = ("cache_salt", "priority")


def strip_client_fields(body: dict[str, Any]) -> bool:
    """Drop the isolation fields a client sent; True when there was one to drop."""
    removed = False
    for name in GATEWAY_FIELDS:
        if name in body:
            del body[name]
            removed = True
    return removed


class TenantIsolation:
    def __init__(self, settings: IsolationSettings, salt_secret: bytes) -> None:
        self._tiers = Tiers(settings)
        self._salter = CacheSalter(salt_secret) if settings.cache_salt_enabled else None
        self._priority_enabled = settings.priority_enabled

    @classmethod
    def from_settings(cls, settings: IsolationSettings, key_hash_secret: bytes) -> TenantIsolation:
        configured = settings.cache_salt_secret
        secret = derive_secret(
            configured.get_secret_value() if configured else None, key_hash_secret
        )
        return cls(settings, secret)

    def body_fields(self, principal: Principal | None) -> dict[str, Any]:
        """`cache_salt` (unless salting is off or nobody is authenticated) and `priority`
        (only when vLLM runs with --scheduling-policy priority: otherwise it refuses any
        priority but 0), to merge into the upstream body."""
        tier = self._tiers.tier(principal)
        fields: dict[str, Any] = {}
        mode = "off"
        if self._salter is not None and principal is not None:
            mode, group = salt_mode(principal.tenant.metadata.get("cache_salt"))
            fields["cache_salt"] = self._salter.salt(principal.tenant.id, mode, group)
        if self._priority_enabled:
            fields["priority"] = self._tiers.priority(tier)
        metrics.isolation_applied(tier, mode)
        return fields

    def weight(self, principal: Principal | None) -> float:
        """The caller's share of the fair queue, from its tier."""
        return self._tiers.weight(self._tiers.tier(principal))
