"""The real vLLM CPU server, as the launcher starts it, against HF golden greedy outputs.

What the gateway relies on: `/v1/models` lists the base and its adapters, each adapter's
greedy output is its own (also when batched with base requests, which the CPU LoRA
workaround protects), and adapters can be loaded and unloaded at runtime.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fixtures.real_vllm import RealVllm
from vllm_server.tiny_model import GoldenCompletion

pytestmark = pytest.mark.vllm

PROMPTS = ["def main():", "import os\n", "class Config:"]
MAX_TOKENS = 16
RUNTIME_ADAPTER = "tenant-c"

Golden = dict[str, list[GoldenCompletion]]


@pytest.fixture(scope="module")
def golden(real_vllm: RealVllm) -> Golden:
    return real_vllm.golden(PROMPTS, MAX_TOKENS)


async def complete(client: httpx.AsyncClient, model: str, prompt: str) -> httpx.Response:
    return await client.post(
        "/v1/completions",
        json={
            "model": model,
            "prompt": prompt,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "return_token_ids": True,
        },
    )


def as_golden(response: httpx.Response) -> GoldenCompletion:
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    return GoldenCompletion(choice["token_ids"], choice["text"])


async def listed_models(client: httpx.AsyncClient) -> dict[str, dict]:
    response = await client.get("/v1/models")
    assert response.status_code == 200, response.text
    return {model["id"]: model for model in response.json()["data"]}


async def test_models_lists_the_base_and_the_preloaded_adapters(real_vllm: RealVllm) -> None:
    async with httpx.AsyncClient(base_url=real_vllm.url, timeout=60) as client:
        models = await listed_models(client)
    assert models[real_vllm.served_model_name]["parent"] is None
    for name in real_vllm.preloaded:
        assert models[name]["parent"] == real_vllm.served_model_name
        assert models[name]["root"] == str(real_vllm.adapters[name])


def test_each_adapter_changes_the_golden_output(golden: Golden) -> None:
    """Without this, matching the golden output would not show which adapter ran."""
    outputs = [tuple(tuple(c.token_ids) for c in completions) for completions in golden.values()]
    assert len(set(outputs)) == len(golden) == 4


@pytest.mark.parametrize("model", ["base", "tenant-a", "tenant-b"])
async def test_greedy_output_equals_the_hf_golden_one(
    real_vllm: RealVllm, golden: Golden, model: str
) -> None:
    async with httpx.AsyncClient(base_url=real_vllm.url, timeout=60) as client:
        for prompt, expected in zip(PROMPTS, golden[model], strict=True):
            assert as_golden(await complete(client, model, prompt)) == expected


async def test_base_and_adapter_requests_batched_together_stay_apart(
    real_vllm: RealVllm, golden: Golden
) -> None:
    """Concurrent mixed traffic is where vLLM 0.32's CPU LoRA bug gave base requests an adapter."""
    cases = [(model, index) for model in ("base", "tenant-a", "tenant-b") for index in range(3)] * 2
    async with httpx.AsyncClient(base_url=real_vllm.url, timeout=120) as client:
        responses = await asyncio.gather(
            *(complete(client, model, PROMPTS[index]) for model, index in cases)
        )
    for (model, index), response in zip(cases, responses, strict=True):
        assert as_golden(response) == golden[model][index], (model, PROMPTS[index])


async def test_runtime_load_then_unload_of_an_adapter(real_vllm: RealVllm, golden: Golden) -> None:
    path = str(real_vllm.adapters[RUNTIME_ADAPTER])
    async with httpx.AsyncClient(base_url=real_vllm.url, timeout=60) as client:
        loaded = await client.post(
            "/v1/load_lora_adapter", json={"lora_name": RUNTIME_ADAPTER, "lora_path": path}
        )
        try:
            assert loaded.status_code == 200, loaded.text
            assert (await listed_models(client))[RUNTIME_ADAPTER]["root"] == path
            for prompt, expected in zip(PROMPTS, golden[RUNTIME_ADAPTER], strict=True):
                assert as_golden(await complete(client, RUNTIME_ADAPTER, prompt)) == expected
        finally:
            unloaded = await client.post(
                "/v1/unload_lora_adapter", json={"lora_name": RUNTIME_ADAPTER}
            )
        assert unloaded.status_code == 200, unloaded.text
        assert RUNTIME_ADAPTER not in await listed_models(client)
        gone = await complete(client, RUNTIME_ADAPTER, PROMPTS[0])
    assert gone.status_code == 404, gone.text
    assert gone.json()["error"]["param"] == "model"
