"""A tenant and an API key on the benchmarked gateway, made through its admin API.

Requests through the gateway then take the product's normal path (key check, tenant policy,
model route), not a switched-off shortcut; LiteLLM is measured with its master key only,
its lightest path, so the comparison stays conservative for us. The gateway's store goes to
the harness's scratch directory, never to the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

ADMIN_KEY = "bench-admin-key"
_ADMIN_PREFIX = "/admin/v1"
_NAME = "bench"


def environment(workdir: Path) -> dict[str, str]:
    """What the gateway needs to accept the admin calls below and keep its store in `workdir`."""
    return {
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(workdir / "gateway.db"),
    }


def create_key(gateway_url: str, model: str) -> str:
    """Create a tenant allowed `model` (routed to the upstream model of that name) and a key
    for it, with no limits; return the key's secret."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=gateway_url + _ADMIN_PREFIX, headers=headers, timeout=30) as admin:
        tenant = admin.post(
            "/tenants",
            json={"name": _NAME, "models": {model: {"base_model": model}}, "default_model": model},
        )
        tenant.raise_for_status()
        key = admin.post("/keys", json={"tenant_id": tenant.json()["id"], "name": _NAME})
        key.raise_for_status()
        return key.json()["secret"]
