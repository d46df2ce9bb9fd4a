"""The fair queue's budget is the deployment's: several gateway instances on one Redis, and
several workers of one instance, never have more than `max_in_flight` requests at vLLM
together, and still use all of it: their open slots divided, and the reserve (half the
budget, here) lent from one pool, through Redis or the workers' shared file."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gateway import Gateway, gateways_sharing_redis, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults

BUDGET = 4
REQUESTS = 12
COMPLETION = {"model": "base", "prompt": "def main():", "max_tokens": 2}
FAIR_QUEUE = {
    "isolation__fair_queue__enabled": "true",
    "isolation__fair_queue__max_in_flight": str(BUDGET),
}
RESERVED_SHARES = pytest.mark.parametrize("reserved_share", ["0", "0.5"])
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


@RESERVED_SHARES
def test_instances_on_one_redis_share_the_budget(
    standin: ServerProcess, redis_url: str, tmp_path: Path, reserved_share: str
) -> None:
    set_faults(standin, ttft_ms=300)  # each request holds its slot long enough to queue
    settings = {**FAIR_QUEUE, "isolation__fair_queue__reserved_share": reserved_share}
    with gateways_sharing_redis(standin.url, redis_url, tmp_path, 2, **settings) as gateways:
        for _ in range(50):  # each instance's first announcement may precede the other's
            if [budget_seen(gateway) for gateway in gateways] == [2, 2]:
                break
            time.sleep(0.1)
        assert [budget_seen(gateway) for gateway in gateways] == [2, 2]
        assert asyncio.run(most_at_vllm(standin, gateways)) == BUDGET


@RESERVED_SHARES
def test_workers_of_one_instance_share_the_budget(
    standin: ServerProcess, tmp_path: Path, reserved_share: str
) -> None:
    set_faults(standin, ttft_ms=300)
    settings = {**FAIR_QUEUE, "isolation__fair_queue__reserved_share": reserved_share}
    gateway = start_gateway(standin.url, tmp_path, server__workers="2", **settings)
    try:
        for _ in range(50):  # the second worker may still be starting
            if budget_seen(gateway) == BUDGET:  # the two workers' shares, summed
                break
            time.sleep(0.1)
        assert budget_seen(gateway) == BUDGET
        assert asyncio.run(most_at_vllm(standin, [gateway])) == BUDGET
    finally:
        gateway.stop()


async def running_at(standin: ServerProcess, client: httpx.AsyncClient) -> int:
    page = (await client.get(standin.url + "/metrics")).content
    return int(float(_RUNNING.findall(page)[0]))


async def quiet_burst_on_one_instance(
    standin: ServerProcess, gateways: list[Gateway], quiet_keys: list[str]
) -> int:
    """The noisy tenant holds every open slot of both instances and has more waiting; then
    each quiet tenant sends one request, all to the first instance. The most at vLLM then."""

    async def complete(gateway: Gateway, key: str) -> None:
        response = await client.post(
            gateway.url + "/v1/completions",
            json=COMPLETION,
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text

    async with httpx.AsyncClient(timeout=60) as client:
        for gateway in gateways:  # the quiet tenants are active everywhere: a fair share each
            await asyncio.gather(*(complete(gateway, key) for key in quiet_keys))
        noisy = asyncio.gather(*(complete(gateways[i % 2], gateways[0].api_key) for i in range(4)))
        while await running_at(standin, client) < 2:  # one open slot per instance
            await asyncio.sleep(0.01)
        quiet = asyncio.gather(*(complete(gateways[0], key) for key in quiet_keys))
        most = 0
        while not quiet.done():
            most = max(most, await running_at(standin, client))
            await asyncio.sleep(0.01)
        await quiet
        await noisy
    return most


def test_a_quiet_burst_on_one_instance_borrows_the_whole_deployments_reserve(
    standin: ServerProcess, redis_url: str, tmp_path: Path
) -> None:
    """Budget 4 with a reserve of 2 over two instances: each keeps 1 open slot. Both quiet
    requests reach the first instance and both start at once, beside the two noisy ones; with
    the reserve divided (1 each), the second would wait for a noisy request to end."""
    set_faults(standin, ttft_ms=1500)
    settings = {**FAIR_QUEUE, "isolation__fair_queue__reserved_share": "0.5"}
    with gateways_sharing_redis(standin.url, redis_url, tmp_path, 2, **settings) as gateways:
        for _ in range(50):
            if [budget_seen(gateway) for gateway in gateways] == [2, 2]:
                break
            time.sleep(0.1)
        quiet_keys = [
            gateways[0].new_tenant(f"quiet-{index}", {"base": {"base_model": "base"}})[1]
            for index in range(2)
        ]
        assert asyncio.run(quiet_burst_on_one_instance(standin, gateways, quiet_keys)) == BUDGET
