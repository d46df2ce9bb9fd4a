"""Principals for isolation tests: a tenant and one of its keys, with chosen metadata."""

from __future__ import annotations

from prometheus_client import REGISTRY

from gateway.tenancy.auth import Principal
from gateway.tenancy.models import ApiKey, Tenant


def principal(
    tenant_id: str = "tenant_1",
    tenant_metadata: dict[str, str] | None = None,
    key_metadata: dict[str, str] | None = None,
) -> Principal:
    tenant = Tenant(id=tenant_id, name=f"{tenant_id}-name", metadata=tenant_metadata or {})
    key = ApiKey(
        id=f"key_{tenant_id}",
        tenant_id=tenant_id,
        name="key",
        prefix="sk-test",
        secret_hash="h",
        metadata=key_metadata or {},
    )
    return Principal.of(key, tenant)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
