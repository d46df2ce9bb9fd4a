"""LoRA routing through a real gateway process over several stand-in replicas: an adapter
registered at runtime is loaded on first use and stays there, a tenant sees only its own
names, a replica that is down costs no request, and a load vLLM refuses is a clear error."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.gateway import Gateway, start_gateway, tenant_with_adapter
from tests.fixtures.metrics import metric_value
from tests.fixtures.processes import ServerProcess
from tests.fixtures.replicas import served_adapters
from tests.fixtures.standin import start_standin

FAST = {
    "routing__health_interval_s": "0.2",
    "routing__scrape_interval_s": "0.2",
    "routing__registry_refresh_s": "0.2",
}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    log_dir = tmp_path_factory.mktemp("replicas")
    servers = [start_standin(log_dir, "--max-loras", "2") for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def lora_gateway(
    replicas: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    first, *others = replicas
    gateway = start_gateway(
        first.url,
        tmp_path_factory.mktemp("gateway"),
        upstream__replicas=json.dumps([s.url for s in others]),
        **FAST,
    )
    yield gateway
    gateway.stop()


def adapter_client(gateway: Gateway, adapter_dir: Path) -> tuple[str, openai.OpenAI]:
    """A new tenant, its own registered adapter, and a client: (adapter name, client)."""
    adapter = f"lora-{uuid.uuid4().hex[:8]}"
    tenant = tenant_with_adapter(gateway, adapter, adapter_dir, adapter, "my-model")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant.secret, max_retries=0)
    return adapter, client


def adapter_loads(gateway: Gateway, outcome: str) -> float:
    return metric_value(
        gateway.url, "vllm_gateway_adapter_operations_total", operation="load", outcome=outcome
    )


def requests_served(server: ServerProcess) -> float:
    return metric_value(server.url, "vllm:request_success_total")


def test_a_runtime_adapter_is_loaded_on_first_use_and_stays_there(
    lora_gateway: Gateway, replicas: list[ServerProcess], tmp_path: Path
) -> None:
    adapter, client = adapter_client(lora_gateway, tmp_path)
    before = [requests_served(s) for s in replicas]
    loads_before = adapter_loads(lora_gateway, "ok")
    for _ in range(4):
        answer = client.completions.create(model="my-model", prompt="hi", max_tokens=4)
        assert answer.model == "my-model"
    stream = client.chat.completions.create(
        model="my-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
    )
    assert {chunk.model for chunk in stream} == {"my-model"}
    holders = [s for s in replicas if adapter in served_adapters(s.url)]
    assert len(holders) == 1
    served = [requests_served(s) - b for s, b in zip(replicas, before, strict=True)]
    assert served[replicas.index(holders[0])] == 5
    assert sum(served) == 5
    assert adapter_loads(lora_gateway, "ok") - loads_before == 1  # the gateway's own metric


def test_a_tenant_cannot_reach_another_tenants_adapter(
    lora_gateway: Gateway, tmp_path: Path
) -> None:
    adapter, owner = adapter_client(lora_gateway, tmp_path)
    owner.completions.create(model="my-model", prompt="hi", max_tokens=2)
    _, other = adapter_client(lora_gateway, tmp_path)
    for name in (adapter, "my-model-of-the-other-tenant"):
        with pytest.raises(openai.NotFoundError) as caught:
            other.completions.create(model=name, prompt="hi", max_tokens=2)
        assert caught.value.body["code"] == "model_not_found"


def test_an_adapter_vllm_cannot_load_is_a_clear_openai_error(
    lora_gateway: Gateway, tmp_path: Path
) -> None:
    _, client = adapter_client(lora_gateway, tmp_path / "missing")
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(model="my-model", prompt="hi", max_tokens=2)
    failed_before = adapter_loads(lora_gateway, "error")
    with pytest.raises(openai.APIStatusError) as again:
        client.completions.create(model="my-model", prompt="hi", max_tokens=2)
    assert again.value.status_code == caught.value.status_code == 502
    assert adapter_loads(lora_gateway, "error") == failed_before + 1
    assert caught.value.body["code"] == "adapter_load_failed"
    assert "`my-model`" in caught.value.body["message"]


def test_a_replica_that_is_down_costs_no_request(tmp_path: Path) -> None:
    up, down = (start_standin(tmp_path) for _ in range(2))
    # Health checks far apart: the requests themselves run into the dead replica.
    gateway = start_gateway(
        up.url,
        tmp_path,
        upstream__replicas=json.dumps([down.url]),
        routing__health_interval_s="600",
        routing__eject_after_failures="100",
    )
    try:
        down.stop()
        for _ in range(4):
            response = httpx.post(
                gateway.url + "/v1/completions",
                json={"model": "base", "prompt": "hi", "max_tokens": 2},
                headers=gateway.headers,
            )
            assert response.status_code == 200, response.text
        assert httpx.get(gateway.url + "/readyz").status_code == 200
    finally:
        gateway.stop()
        up.stop()


def test_admins_see_each_replicas_health_and_adapters(
    lora_gateway: Gateway, replicas: list[ServerProcess], tmp_path: Path
) -> None:
    adapter, client = adapter_client(lora_gateway, tmp_path)
    client.completions.create(model="my-model", prompt="hi", max_tokens=2)
    listed = lora_gateway.admin("GET", "/replicas")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert sorted(item["url"] for item in items) == sorted(s.url for s in replicas)
    assert all(item["healthy"] and item["adapter_slots"] == 2 for item in items)
    assert [adapter in item["adapters"] for item in items].count(True) == 1
    assert httpx.get(lora_gateway.url + "/admin/v1/replicas").status_code == 401
