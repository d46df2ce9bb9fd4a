"""The GPU benchmark's tenants on the gateway, made through its admin API: each routed to its
own LoRA adapter, each with a key, each limited so generously that no request is refused.

The tenant bodies are bench/gpu/tenants.json, sent as the admin API takes them: a stage added
to the gateway later (a safety policy, other limits) is switched on there, not in code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

TENANTS_FILE = Path(__file__).with_name("tenants.json")
_ADMIN_PREFIX = "/admin/v1"


@dataclass(frozen=True)
class BenchTenant:
    """A tenant's public model name on the gateway, the adapter vLLM serves it with, its key."""

    name: str
    public_model: str
    adapter: str
    api_key: str


def provision(
    gateway_url: str, admin_key: str, tenants_file: Path = TENANTS_FILE
) -> list[BenchTenant]:
    """Create every tenant of `tenants_file` and a key for each; their default model is the one
    the benchmark names."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    made = []
    with httpx.Client(base_url=gateway_url + _ADMIN_PREFIX, headers=headers, timeout=30) as admin:
        for body in json.loads(tenants_file.read_text()):
            tenant = admin.post("/tenants", json=body)
            tenant.raise_for_status()
            key = admin.post("/keys", json={"tenant_id": tenant.json()["id"], "name": "bench"})
            key.raise_for_status()
            public_model = body["default_model"]
            made.append(
                BenchTenant(
                    name=body["name"],
                    public_model=public_model,
                    adapter=body["models"][public_model]["adapter"],
                    api_key=key.json()["secret"],
                )
            )
    return made
