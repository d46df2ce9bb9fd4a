"""The fair queue in front of a real stand-in process, over real HTTP."""

from __future__ import annotations

import asyncio

import httpx

from gateway.isolation.fair_queue import FairQueue
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults

COMPLETION = {"model": "base", "prompt": "def main():", "max_tokens": 4}


async def test_a_quiet_tenant_is_served_before_a_noisy_tenants_backlog(
    standin: ServerProcess,
) -> None:
    set_faults(standin, ttft_ms=100)  # each request holds its slot long enough to queue others
    queue = FairQueue(max_in_flight=1, queue_timeout_s=30)
    finished: list[str] = []
    async with httpx.AsyncClient(base_url=standin.url, timeout=30) as client:

        async def complete(tenant: str) -> None:
            async with queue.slot(tenant):
                response = await client.post("/v1/completions", json=COMPLETION)
                response.raise_for_status()
            finished.append(tenant)

        noisy = [asyncio.create_task(complete("noisy")) for _ in range(3)]
        while queue.queued("noisy") < 2:
            await asyncio.sleep(0.01)
        quiet = asyncio.create_task(complete("quiet"))
        await asyncio.gather(*noisy, quiet)
    # first come, first served would put "quiet" last
    assert finished == ["noisy", "quiet", "noisy", "noisy"]
    assert queue.in_flight == 0
