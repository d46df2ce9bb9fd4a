"""The fair queue's budget is the deployment's: several gateway instances on one Redis, and
several workers of one instance, never have more than `max_in_flight` requests at vLLM
together, and still use all of it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from tests.fixtures.gateway import Gateway, gateways_sharing_redis, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults

BUDGET = 4
REQUESTS = 12
COMPLETION = {"model": "base", "prompt": "def main():", "max_tokens": 2}
FAIR_QUEUE = {
    "isolation__fair_queue__enabled": "true",
    "isolation__fair_queue__max_in_flight": str(BUDGET),
    "isolation__fair_queue__reserved_share": "0",
}
_RUNNING = re.compile(rb"^vllm:num_requests_running(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


async def most_at_vllm(standin: ServerProcess, gateways: list[Gateway]) -> int:
    """Send `REQUESTS` completions at once, spread over `gateways`; the most the stand-in
    held at once meanwhile."""
    most = 0
    async with httpx.AsyncClient(timeout=60) as client:

        async def complete(gateway: Gateway) -> None:
            response = await client.post(
                gateway.url + "/v1/completions", json=COMPLETION, headers=gateway.headers
            )
            assert response.status_code == 200, response.text

        sent = asyncio.gather(*(complete(gateways[i % len(gateways)]) for i in range(REQUESTS)))
        while not sent.done():
            page = (await client.get(standin.url + "/metrics")).content
            most = max(most, int(float(_RUNNING.findall(page)[0])))
            await asyncio.sleep(0.02)
        await sent
    return most


def budget_seen(gateway: Gateway) -> float:
    page = httpx.get(gateway.url + "/metrics", timeout=10).text
    return float(re.findall(r"^vllm_gateway_fair_queue_budget (\S+)$", page, re.M)[0])


def test_instances_on_one_redis_share_the_budget(
    standin: ServerProcess, redis_url: str, tmp_path: Path
) -> None:
    set_faults(standin, ttft_ms=300)  # each request holds its slot long enough to queue
    with gateways_sharing_redis(standin.url, redis_url, tmp_path, 2, **FAIR_QUEUE) as gateways:
        for _ in range(50):  # each instance's first announcement may precede the other's
            if [budget_seen(gateway) for gateway in gateways] == [2, 2]:
                break
            time.sleep(0.1)
        assert [budget_seen(gateway) for gateway in gateways] == [2, 2]
        assert asyncio.run(most_at_vllm(standin, gateways)) == BUDGET


def test_workers_of_one_instance_share_the_budget(standin: ServerProcess, tmp_path: Path) -> None:
    set_faults(standin, ttft_ms=300)
    gateway = start_gateway(standin.url, tmp_path, server__workers="2", **FAIR_QUEUE)
    try:
        for _ in range(50):  # the second worker may still be starting
            if budget_seen(gateway) == BUDGET:  # the two workers' shares, summed
                break
            time.sleep(0.1)
        assert budget_seen(gateway) == BUDGET
        assert asyncio.run(most_at_vllm(standin, [gateway])) == BUDGET
    finally:
        gateway.stop()
