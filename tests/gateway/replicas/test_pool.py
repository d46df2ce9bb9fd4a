"""A DNS name resolving to several addresses: one replica per address, kept up to date as
the answer changes. Two real stand-ins listen on 127.0.0.1 and 127.0.0.2 at one port; only
the DNS answer is the test's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import ServerProcess, free_port
from tests.fixtures.replicas import (
    route_and_complete,
    routing_settings,
    running_router,
    standin_at,
    wait_until,
)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def twin_standins(tmp_path: Path) -> Iterator[tuple[int, list[ServerProcess]]]:
    port = free_port()
    servers = [standin_at(port, tmp_path)]
    try:
        servers.append(standin_at(port, tmp_path, "--host", "127.0.0.2"))
        # start_server polled 127.0.0.1, which the first one answers: wait for the second
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.2:{port}/health"):
            assert time.monotonic() < deadline, "the stand-in on 127.0.0.2 did not start"
            time.sleep(0.1)
        yield port, servers
    finally:
        for server in servers:
            server.stop()


async def test_a_name_with_two_addresses_is_two_replicas_and_follows_dns(
    twin_standins: tuple[int, list[ServerProcess]],
) -> None:
    port, _ = twin_standins
    answer = ["127.0.0.1", "127.0.0.2"]

    async def dns(host: str, resolved_port: int) -> list[str]:
        assert (host, resolved_port) == ("vllm.test", port)
        return list(answer)

    settings = routing_settings(dns_refresh_s=0.1)
    async with running_router([f"http://vllm.test:{port}"], settings, resolve=dns) as router:
        first, second = (f"http://127.0.0.{n}:{port}" for n in (1, 2))
        assert [r.url for r in router.replicas] == [first, second]
        assert set(await route_and_complete(router, None, 4)) == {first, second}
        kept = router.replicas[1]
        answer[:] = ["127.0.0.2", "127.0.0.3"]  # .1 leaves, .3 (nothing listens) joins
        third = f"http://127.0.0.3:{port}"
        await wait_until(
            lambda: sorted(r.url for r in router.pool.replicas) == [second, third], "DNS followed"
        )
        assert router.replicas[0] is kept
        assert [r.healthy for r in router.replicas] == [True, False]
        assert await route_and_complete(router, None, 2) == [second] * 2
