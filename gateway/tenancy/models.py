"""The tenancy data model, shared by the stores, the admin API and the hot path.

Plain dataclasses (not pydantic): the hot path reads them on every request, and the admin API
has its own request/response schemas that convert to and from these.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.tenancy.secrets import new_id


@dataclass(slots=True)
class Limits:
    """Per-tenant limits, or per-key overrides of them; None means "not limited here"."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None


@dataclass(slots=True)
class ModelRoute:
    """Where a tenant's public model name goes: a base model and optionally a LoRA adapter."""

    base_model: str
    adapter: str | None = None


@dataclass(slots=True)
class Tenant:
    id: str
    name: str
    models: dict[str, ModelRoute] = field(default_factory=dict)
    default_model: str | None = None
    limits: Limits = field(default_factory=Limits)
    safety_policy: str | None = None
    enabled: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass(slots=True)
class ApiKey:
    """An API key; only the keyed hash of its secret is ever stored.

    After a rotation the previous secret's hash stays valid until `grace_until`, so clients
    can switch over without downtime.
    """

    id: str
    tenant_id: str
    name: str
    prefix: str
    secret_hash: str
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    allowed_models: list[str] | None = None
    limits: Limits = field(default_factory=Limits)
    metadata: dict[str, str] = field(default_factory=dict)
    grace_secret_hash: str | None = None
    grace_until: float | None = None

    def secret_hashes(self) -> list[str]:
        """The hashes a lookup may find this key by."""
        if self.grace_secret_hash is None:
            return [self.secret_hash]
        return [self.secret_hash, self.grace_secret_hash]


@dataclass(slots=True)
class AuditEntry:
    """One admin change: who (admin key id), what (action on target) and the change itself."""

    id: str
    at: float
    admin_key_id: str
    action: str
    target_type: str
    target_id: str
    change: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def now(
        cls,
        admin_key_id: str,
        action: str,
        target_type: str,
        target_id: str,
        change: dict[str, Any],
    ) -> AuditEntry:
        """A new entry for a change made just now (a fresh id, the current time)."""
        return cls(
            new_id("audit"), time.time(), admin_key_id, action, target_type, target_id, change
        )


def to_dict(record: Tenant | ApiKey | AuditEntry | Limits | ModelRoute) -> dict[str, Any]:
    return asdict(record)


def tenant_from_dict(data: dict[str, Any]) -> Tenant:
    data = dict(data)
    data["models"] = {name: ModelRoute(**route) for name, route in data["models"].items()}
    data["limits"] = Limits(**data["limits"])
    return Tenant(**data)


def key_from_dict(data: dict[str, Any]) -> ApiKey:
    data = dict(data)
    data["limits"] = Limits(**data["limits"])
    return ApiKey(**data)


def audit_from_dict(data: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**data)
