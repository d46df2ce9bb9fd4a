"""Isolation inside a real vLLM (CPU, tiny model), with the fields the gateway would send.

Prefix cache: the shared `real_vllm` server runs with --enable-prefix-caching; the same long
prompt sent twice under one tenant's `cache_salt` hits the cache the second time, under
another tenant's salt it does not, and tenants in one shared group do hit each other's.
Priority: a server of this module's own runs --scheduling-policy priority with one sequence
at a time, so requests queue; a premium request sent after three batch ones overtakes them.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.isolation.upstream_fields import TenantIsolation
from gateway.settings import IsolationSettings
from tests.fixtures.metrics import metric_value
from tests.fixtures.real_vllm import READY_TIMEOUT_S, RealVllm, tiny_model_config
from tests.gateway.isolation.conftest import principal
from vllm_server.launcher import (
    VllmServer,
    default_venv,
    venv_python,
)

pytestmark = pytest.mark.vllm

KEY_SECRET = b"key-hash-secret-for-isolation-tests"
CACHE_HITS = "vllm:prefix_cache_hits_total"
# vLLM CPU caches prefixes in blocks of 128 tokens: a prompt of ~300 fills two of them.
PROMPT_TOKENS = 300
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")


def long_prompt(url: str) -> str:
    """Words in a random order no other test sends, about PROMPT_TOKENS tokens long."""
    dice = random.Random(uuid.uuid4().int)
    words: list[str] = []
    while True:
        words += dice.choices(WORDS, k=20)
        prompt = " ".join(words)
        count = httpx.post(f"{url}/tokenize", json={"model": "base", "prompt": prompt}).json()
        if count["count"] >= PROMPT_TOKENS:
            return prompt


def complete(url: str, prompt: str, fields: dict[str, Any]) -> None:
    body = {"model": "base", "prompt": prompt, "max_tokens": 2, **fields}
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text


def test_the_prefix_cache_is_shared_only_under_one_salt(real_vllm: RealVllm) -> None:
    isolation = TenantIsolation.from_settings(IsolationSettings(), KEY_SECRET)
    tenant_a = isolation.body_fields(principal("tenant_a"))
    tenant_b = isolation.body_fields(principal("tenant_b"))
    prompt = long_prompt(real_vllm.url)

    complete(real_vllm.url, prompt, tenant_a)
    before = metric_value(real_vllm.url, CACHE_HITS)
    complete(real_vllm.url, prompt, tenant_a)
    after_same_tenant = metric_value(real_vllm.url, CACHE_HITS)
    complete(real_vllm.url, prompt, tenant_b)
    after_other_tenant = metric_value(real_vllm.url, CACHE_HITS)

    assert after_same_tenant > before  # tenant a reuses its own cached prefix
    assert after_other_tenant == after_same_tenant  # tenant b cannot reach a's


def test_tenants_of_one_shared_group_hit_each_others_cache(real_vllm: RealVllm) -> None:
    isolation = TenantIsolation.from_settings(IsolationSettings(), KEY_SECRET)
    shared = {"cache_salt": "shared:docs-team"}
    first = isolation.body_fields(principal("tenant_c", shared))
    second = isolation.body_fields(principal("tenant_d", shared))
    prompt = long_prompt(real_vllm.url)

    complete(real_vllm.url, prompt, first)
    before = metric_value(real_vllm.url, CACHE_HITS)
    complete(real_vllm.url, prompt, second)
    assert metric_value(real_vllm.url, CACHE_HITS) > before


@pytest.fixture(scope="module")
def priority_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM with priority scheduling and one running sequence at a time, so others wait."""
    config = tiny_model_config(
        venv_python(default_venv()),
        scheduling_policy="priority",
        extra_args=("--max-num-seqs", "1"),
    )
    log_path = tmp_path_factory.mktemp("priority-vllm") / "vllm.log"
    server = VllmServer.start(config, log_path, READY_TIMEOUT_S)
    try:
        yield server.url
    finally:
        server.stop()


def wait_until_waiting(url: str, count: int, long_request: asyncio.Task[None]) -> None:
    """Until vLLM reports `count` requests waiting (the long one must still be running)."""
    while metric_value(url, "vllm:num_requests_waiting") < count:
        assert not long_request.done(), "the long request ended before the others queued"
        time.sleep(0.05)


async def test_a_premium_request_overtakes_queued_batch_requests(priority_vllm: str) -> None:
    isolation = TenantIsolation.from_settings(IsolationSettings(priority_enabled=True), KEY_SECRET)
    batch = isolation.body_fields(principal("batch_tenant", {"tier": "batch"}))
    premium = isolation.body_fields(principal("premium_tenant", {"tier": "premium"}))
    finished: list[str] = []
    async with httpx.AsyncClient(base_url=priority_vllm, timeout=120) as client:

        async def complete_async(name: str, fields: dict[str, Any], tokens: int) -> None:
            body = {"model": "base", "prompt": "def main():", "max_tokens": tokens}
            body |= {"ignore_eos": True, **fields}
            response = await client.post("/v1/completions", json=body)
            assert response.status_code == 200, response.text
            finished.append(name)

        # a long batch request takes the only running slot ...
        running = asyncio.create_task(complete_async("running", batch, 480))
        while metric_value(priority_vllm, "vllm:num_requests_running") < 1:
            await asyncio.sleep(0.05)
        # ... three more batch requests queue behind it ...
        queued = [asyncio.create_task(complete_async(f"batch-{i}", batch, 8)) for i in range(3)]
        await asyncio.to_thread(wait_until_waiting, priority_vllm, 3, running)
        # ... and a premium request, sent last, is scheduled before them
        await complete_async("premium", premium, 8)
        await asyncio.gather(running, *queued)
    assert finished.index("premium") < min(finished.index(f"batch-{i}") for i in range(3))
