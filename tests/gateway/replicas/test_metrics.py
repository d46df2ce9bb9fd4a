"""What routing reads from a vLLM /metrics page: old and new names, data-parallel engines,
and the current sample of vllm:lora_requests_info among the stale label sets."""

from __future__ import annotations

import asyncio

import httpx

from gateway.replicas.metrics import ReplicaLoad, parse_load
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults

# The shape vLLM 0.32 writes: the LoRA gauge keeps every label set it was ever set with, and
# its value is the time it was last set.
VLLM_PAGE = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="base"} 3.0
vllm:num_requests_waiting{engine="1",model_name="base"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="base"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="base"} 0.5
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="c",waiting_lora_adapters="a"} 1.8e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.6e9
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="base"} 0.0
process_start_time_seconds 1.7e9
"""


def test_a_vllm_page() -> None:
    assert parse_load(VLLM_PAGE) == ReplicaLoad(
        waiting=5.0,
        kv_cache_usage=0.5,
        max_lora=4,
        running_adapters=frozenset({"c"}),
        waiting_adapters=frozenset({"a"}),
    )


def test_the_old_kv_cache_name_and_no_lora() -> None:
    page = 'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.75\n'
    assert parse_load(page) == ReplicaLoad(kv_cache_usage=0.75, max_lora=None)


def test_unreadable_values_are_skipped() -> None:
    page = 'vllm:num_requests_waiting{engine="0"} NaN\nvllm:num_requests_waiting{engine="1"} 1\n'
    assert parse_load(page).waiting == 1.0


async def test_the_standin_page_while_adapters_wait(standin: ServerProcess) -> None:
    """tenant-a and tenant-b run at once on the module's stand-in (max-loras 4): both show as
    running; the gauges come from a real scrape."""
    set_faults(standin, itl_ms=100)
    async with httpx.AsyncClient(timeout=30) as client:
        requests = [
            asyncio.create_task(
                client.post(
                    standin.url + "/v1/completions",
                    json={"model": name, "prompt": "hi", "max_tokens": 100},
                )
            )
            for name in ("tenant-a", "tenant-b")
        ]
        try:
            load = ReplicaLoad()
            for _ in range(100):
                load = parse_load((await client.get(standin.url + "/metrics")).text)
                if len(load.running_adapters) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            for request in requests:
                request.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
    assert load.running_adapters == {"tenant-a", "tenant-b"}
    assert load.max_lora == 4
    assert 0 < load.kv_cache_usage < 1
