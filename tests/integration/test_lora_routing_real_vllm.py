"""Per-tenant LoRA routing through the gateway in front of a real vLLM (CPU, tiny model).

Each tenant's public model `assistant` maps to its own adapter, registered in the gateway's
adapter registry. Greedy outputs through the gateway must equal vLLM's direct outputs and
the HF golden ones (float32), also when the tenants' requests run concurrently mixed; an
adapter registered at runtime is loaded on first use; and after vLLM is killed and started
again, the gateway loads its adapters back without anyone asking.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.replicas.metrics import parse_load
from tests.fixtures.gateway import Gateway, start_gateway, tenant_with_adapter
from tests.fixtures.processes import free_port
from tests.fixtures.real_vllm import MAX_LORAS, READY_TIMEOUT_S, RealVllm
from tests.fixtures.replicas import served_adapters, unload
from vllm_server.launcher import VllmConfig, VllmServer, default_venv

pytestmark = pytest.mark.vllm

PROMPTS = ["def main():", "import os"]
MAX_TOKENS = 12
RUNTIME_ADAPTER = "tenant-c"  # built with the tiny model, not loaded at vLLM's start
# the last LoRA slot stays empty: vLLM CPU's LoRA bug (vllm_server/launcher.py, lora_slots)
ROUTING = {
    "routing__spare_lora_slots": "1",
    "routing__health_interval_s": "0.5",
    "routing__scrape_interval_s": "0.5",
    "routing__registry_refresh_s": "0.5",
}


def start_lora_gateway(upstream_url: str, log_dir: Path) -> Gateway:
    """A gateway whose fixture tenant maps the base model only: the adapters are the test's
    tenants' own."""
    gateway = start_gateway(upstream_url, log_dir, **ROUTING)
    base_only = {"models": {"base": {"base_model": "base"}}}
    gateway.admin("PATCH", f"/tenants/{gateway.tenant_id}", json=base_only).raise_for_status()
    return gateway


def tenant_for_adapter(gateway: Gateway, adapter: str, path: Path) -> dict[str, str]:
    """A new tenant whose model `assistant` is `adapter`, registered as its own; its headers."""
    return tenant_with_adapter(gateway, adapter, path, f"{adapter}-{uuid.uuid4().hex[:6]}").headers


def greedy(url: str, model: str, prompt: str, headers: dict[str, str] | None = None) -> list[int]:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "return_token_ids": True,
    }
    response = httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == model  # through the gateway: the public name
    return response.json()["choices"][0]["token_ids"]


@pytest.fixture(scope="module")
def lora_gateway(
    real_vllm: RealVllm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_lora_gateway(real_vllm.url, tmp_path_factory.mktemp("lora-gateway"))
    yield gateway
    gateway.stop()  # first, so that it cannot load the runtime adapter back
    if RUNTIME_ADAPTER in served_adapters(real_vllm.url):
        unload(real_vllm.url, RUNTIME_ADAPTER)  # the shared server as the session found it


def test_the_router_reads_vllm_metrics(real_vllm: RealVllm) -> None:
    """vLLM writes vllm:lora_requests_info only once it has scheduled a request."""
    greedy(real_vllm.url, "tenant-a", PROMPTS[0])
    deadline = time.monotonic() + 30
    load = parse_load(httpx.get(real_vllm.url + "/metrics", timeout=10).text)
    while load.max_lora is None:
        assert time.monotonic() < deadline, "no vllm:lora_requests_info sample"
        time.sleep(0.2)
        load = parse_load(httpx.get(real_vllm.url + "/metrics", timeout=10).text)
    assert load.max_lora == MAX_LORAS
    assert 0 <= load.kv_cache_usage <= 1


def test_two_tenants_get_their_own_adapter_concurrently_mixed(
    real_vllm: RealVllm, lora_gateway: Gateway
) -> None:
    golden = real_vllm.golden(PROMPTS, MAX_TOKENS)
    tenants = {
        adapter: tenant_for_adapter(lora_gateway, adapter, real_vllm.adapters[adapter])
        for adapter in real_vllm.preloaded
    }
    jobs = [(adapter, prompt) for _ in range(3) for adapter in tenants for prompt in PROMPTS]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        outputs = list(
            pool.map(
                lambda job: greedy(lora_gateway.url, "assistant", job[1], tenants[job[0]]), jobs
            )
        )
    for (adapter, prompt), token_ids in zip(jobs, outputs, strict=True):
        expected = golden[adapter][PROMPTS.index(prompt)].token_ids
        assert token_ids == expected == greedy(real_vllm.url, adapter, prompt), (adapter, prompt)
    assert len({tuple(ids) for ids in outputs}) > len(PROMPTS)  # the adapters do differ


def test_an_adapter_registered_at_runtime_is_loaded_on_first_use(
    real_vllm: RealVllm, lora_gateway: Gateway
) -> None:
    assert RUNTIME_ADAPTER not in served_adapters(real_vllm.url)
    headers = tenant_for_adapter(lora_gateway, RUNTIME_ADAPTER, real_vllm.adapters[RUNTIME_ADAPTER])
    golden = real_vllm.golden(PROMPTS, MAX_TOKENS)[RUNTIME_ADAPTER]
    for prompt, expected in zip(PROMPTS, golden, strict=True):
        assert greedy(lora_gateway.url, "assistant", prompt, headers) == expected.token_ids
    assert RUNTIME_ADAPTER in served_adapters(real_vllm.url)


def test_after_a_vllm_restart_the_gateway_loads_its_adapters_back(
    real_vllm: RealVllm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own vLLM (the session's is shared): killed, started again on the same port."""
    # vLLM CPU pins its engine to core 0 by default, where the session's vLLM runs already
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    config = VllmConfig(
        model=str(real_vllm.model_dir),
        max_loras=2,
        max_lora_rank=8,
        runtime_lora_updating=True,
        dtype="float32",
        max_model_len=512,
        port=free_port(),
        venv=str(default_venv()),
    )
    server = VllmServer.start(config, tmp_path / "vllm-1.log", READY_TIMEOUT_S)
    gateway = start_lora_gateway(server.url, tmp_path)
    try:
        headers = tenant_for_adapter(gateway, RUNTIME_ADAPTER, real_vllm.adapters[RUNTIME_ADAPTER])
        expected = real_vllm.golden(PROMPTS, MAX_TOKENS)[RUNTIME_ADAPTER][0].token_ids
        assert greedy(gateway.url, "assistant", PROMPTS[0], headers) == expected
        server.stop()
        server = VllmServer.start(config, tmp_path / "vllm-2.log", READY_TIMEOUT_S)
        deadline = time.monotonic() + 60
        while RUNTIME_ADAPTER not in served_adapters(server.url):
            assert time.monotonic() < deadline, "the gateway did not load the adapter back"
            time.sleep(0.5)
        assert greedy(gateway.url, "assistant", PROMPTS[0], headers) == expected
    finally:
        gateway.stop()
        server.stop()
