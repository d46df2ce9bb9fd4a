"""The gateway as a real uvicorn child process in front of a given upstream, with a tenant and key.

Each gateway gets its own SQLite store in `log_dir`, one admin key, and a tenant `acme` whose
public model names `base`, `tenant-a` and `tenant-b` map to the upstream's base model and its
adapters of the same names, plus an API key for it. Here, not in tests/fixtures (which
re-exports it), because the benchmarks run without tests/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import PYTHON, ServerProcess, free_port, start_server

ADMIN_KEY = "admin-test-key-0123456789"
ACME_MODELS = {
    "base": {"base_model": "base"},
    "tenant-a": {"base_model": "base", "adapter": "tenant-a"},
    "tenant-b": {"base_model": "base", "adapter": "tenant-b"},
}


@dataclass
class Gateway:
    server: ServerProcess
    api_key: str
    tenant_id: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}

    def admin(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.request(method, self.url + "/admin/v1" + path, headers=headers, **kwargs)

    def new_tenant(self, name: str, models: dict[str, dict[str, str]]) -> tuple[str, str]:
        """Create a tenant with `models` and a key for it: (tenant id, key secret)."""
        tenant = self.admin("POST", "/tenants", json={"name": name, "models": models})
        tenant.raise_for_status()
        tenant_id = tenant.json()["id"]
        key = self.admin("POST", "/keys", json={"tenant_id": tenant_id, "name": f"{name}-key"})
        key.raise_for_status()
        return tenant_id, key.json()["secret"]

    def stop(self) -> int:
        return self.server.stop()


def start_gateway(
    upstream_url: str, log_dir: Path, *, tenant: str = "acme", **settings: str
) -> Gateway:
    """Start `vllm-gateway serve` and create `tenant` with a key.

    `settings` are environment overrides such as ``upstream__connect_timeout_s="1"``.
    """
    port = free_port()
    env = {
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(log_dir / f"gateway-{port}.db"),
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
        "VLLM_GATEWAY_AUTH__KEY_CACHE_TTL_S": "1",
    }
    env.update({f"VLLM_GATEWAY_{name.upper()}": value for name, value in settings.items()})
    argv = [PYTHON, "-m", "gateway.cli", "serve", "--port", str(port), "--upstream", upstream_url]
    server = start_server(argv, port, log_dir / f"gateway-{port}.log", "/healthz", env)
    gateway = Gateway(server, api_key="", tenant_id="")
    try:
        gateway.tenant_id, gateway.api_key = gateway.new_tenant(tenant, ACME_MODELS)
    except Exception:
        server.stop()
        raise
    return gateway
