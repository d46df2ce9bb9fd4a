"""The embedded-default quickstart: the stand-in upstream, a demo tenant and key, printed.

Provisioning goes through the admin API over HTTP once the server answers, exactly as an
operator would, so the quickstart exercises the same path as production.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gateway.admin import ADMIN_PREFIX

DEMO_TENANT = "demo"
DEMO_MODELS = {
    "base": {"base_model": "base"},
    "tenant-a": {"base_model": "base", "adapter": "tenant-a"},
}


def new_admin_key() -> str:
    return "admin-" + secrets.token_urlsafe(24)


@contextmanager
def standin_upstream() -> Iterator[str]:
    """The vLLM stand-in as a child process on a free loopback port, stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--port", str(port)]
    process = subprocess.Popen([*argv, "--lora", "tenant-a=/adapters/tenant-a"])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url + "/health", process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def provision_demo_when_up(gateway_url: str, admin_key: str, upstream: str) -> threading.Thread:
    """Create (or reuse) the demo tenant, make a key, and print how to call the gateway."""

    def provision() -> None:
        _wait_until_up(gateway_url + "/healthz", None)
        headers = {"authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=gateway_url + ADMIN_PREFIX, headers=headers) as admin:
            created = admin.post(
                "/tenants",
                json={"name": DEMO_TENANT, "models": DEMO_MODELS, "default_model": "base"},
            )
            if created.status_code == 409:  # an earlier run made it
                tenant = _existing_tenant(admin)
            else:
                tenant = created.raise_for_status().json()
            key = admin.post("/keys", json={"tenant_id": tenant["id"], "name": "quickstart"})
            _print_usage(gateway_url, key.raise_for_status().json()["secret"], admin_key, upstream)

    thread = threading.Thread(target=provision, name="quickstart", daemon=True)
    thread.start()
    return thread


def _existing_tenant(admin: httpx.Client) -> dict[str, object]:
    """The demo tenant of an earlier run, found page by page."""
    offset: int | None = 0
    while offset is not None:
        page = admin.get("/tenants", params={"offset": offset}).raise_for_status().json()
        for tenant in page["items"]:
            if tenant["name"] == DEMO_TENANT:
                return dict(tenant)
        offset = page["next_offset"]
    raise SystemExit(f"tenant {DEMO_TENANT!r} exists but is not listed")


def _wait_until_up(url: str, process: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the stand-in upstream exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up in {timeout}s")
        time.sleep(0.1)


def _print_usage(gateway_url: str, api_key: str, admin_key: str, upstream: str) -> None:
    base = gateway_url + "/v1"
    print(
        f"""
vllm-gateway is serving at {gateway_url}
  upstream : the vLLM stand-in at {upstream} (a fake model; set upstream.url for a real vLLM)
  tenant   : {DEMO_TENANT} (models: {", ".join(DEMO_MODELS)})
  API key  : {api_key}
  admin key: {admin_key}

Try it:
  curl {base}/chat/completions -H 'authorization: Bearer {api_key}' \\
    -H 'content-type: application/json' \\
    -d '{{"model": "base", "messages": [{{"role": "user", "content": "hi"}}]}}'

  python -c "import openai; c = openai.OpenAI(base_url='{base}', api_key='{api_key}'); \\
print(c.chat.completions.create(model='tenant-a', messages=[{{'role': 'user', \\
'content': 'hi'}}]).choices[0].message.content)"

Manage tenants and keys:
  VLLM_GATEWAY_ADMIN_KEY={admin_key} .venv/bin/vllm-gateway keys list --url {gateway_url}
""",
        flush=True,
    )
