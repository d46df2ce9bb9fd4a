"""Routing across several real stand-in replicas, with the router in the test's event loop:
affinity, free slots, queue weight, ejection and re-admission, connect retries, LRU unload,
single flight, and adapters re-applied after a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateway.adapters.models import AdapterRecord
from gateway.adapters.sqlite_registry import SqliteAdapterRegistry
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.routing import ModelTarget, Replica, Router
from gateway.tenancy.models import ModelRoute
from gateway.upstream.base import UpstreamResponse
from tests.fixtures.processes import ServerProcess
from tests.fixtures.replicas import (
    complete,
    register,
    route_and_complete,
    routing_settings,
    running_router,
    running_upstream,
    served_adapters,
    standin_at,
    target,
    unload,
    wait_until,
)
from tests.fixtures.standin import set_faults, start_standin


class Standins:
    """Stand-ins started by one test, all stopped at its end."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[ServerProcess] = []

    def start(self, count: int, *args: str) -> list[ServerProcess]:
        servers = [start_standin(self._log_dir, *args) for _ in range(count)]
        self._started.extend(servers)
        return servers

    def restart(self, server: ServerProcess, *args: str) -> ServerProcess:
        """Stop `server` and start a fresh one (no runtime adapters) on its port."""
        server.stop()
        fresh = standin_at(int(server.url.rsplit(":", 1)[1]), self._log_dir, *args)
        self._started.append(fresh)
        return fresh

    def stop_all(self) -> None:
        for server in self._started:
            server.stop()


@pytest.fixture
def standins(tmp_path: Path) -> Iterator[Standins]:
    started = Standins(tmp_path)
    yield started
    started.stop_all()


@pytest_asyncio.fixture(loop_scope="function")
async def registry(tmp_path: Path) -> AsyncIterator[SqliteAdapterRegistry]:
    registry = SqliteAdapterRegistry(tmp_path / "adapters.db")
    yield registry
    await registry.close()


def replica(router: Router, server: ServerProcess) -> Replica:
    return next(r for r in router.pool.replicas if r.url == server.url)


async def test_an_adapter_stays_where_it_is_loaded(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    servers = standins.start(3, "--max-loras", "2")
    await register(registry, tmp_path, "ad-1")
    async with running_router([s.url for s in servers], routing_settings(), registry) as router:
        served_by = await route_and_complete(router, "ad-1", 8)
        assert len(set(served_by)) == 1
        assert router.loader.stats.load_calls == 1
    holders = [s.url for s in servers if "ad-1" in served_adapters(s.url)]
    assert holders == served_by[:1]


async def test_a_new_adapter_takes_a_free_slot_before_anything_is_unloaded(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    servers = standins.start(2, "--max-loras", "1")
    await register(registry, tmp_path, "ad-a", "ad-b")
    async with running_router([s.url for s in servers], routing_settings(), registry) as router:
        [home_a] = await route_and_complete(router, "ad-a", 1)
        [home_b] = await route_and_complete(router, "ad-b", 1)
        assert home_b != home_a
        assert router.loader.stats.unload_calls == 0
    assert served_adapters(home_a) == {"ad-a"}
    assert served_adapters(home_b) == {"ad-b"}


async def test_queue_weight_steers_requests_away_from_a_busy_replica(
    standins: Standins, tmp_path: Path
) -> None:
    # One LoRA slot each: on `busy`, a request for y waits while x runs.
    busy, idle = standins.start(2, "--lora=x=adapters/x", "--lora=y=adapters/y", "--max-loras", "1")
    set_faults(busy, itl_ms=100)
    settings = routing_settings(kv_cache_weight=0)  # the queue alone must decide
    async with (
        running_router([busy.url, idle.url], settings) as router,
        httpx.AsyncClient(timeout=60) as client,
    ):
        long_requests = [
            asyncio.create_task(
                client.post(
                    busy.url + "/v1/completions",
                    json={"model": name, "prompt": "hi", "max_tokens": 200},
                )
            )
            for name in ("x", "y")
        ]
        try:
            await wait_until(lambda: replica(router, busy).waiting >= 1, "busy reports a queue")
            served_by = await route_and_complete(router, None, 6)
        finally:
            for request in long_requests:
                request.cancel()
            await asyncio.gather(*long_requests, return_exceptions=True)
    assert served_by == [idle.url] * 6


async def test_a_failing_replica_is_ejected_and_readmitted(standins: Standins) -> None:
    first, second = standins.start(2)
    async with running_router([first.url, second.url], routing_settings()) as router:
        second.stop()
        await wait_until(lambda: not replica(router, second).healthy, "second is ejected")
        assert await route_and_complete(router, None, 4) == [first.url] * 4
        standins.restart(second)
        await wait_until(lambda: replica(router, second).healthy, "second is re-admitted")
        assert second.url in await route_and_complete(router, None, 4)


async def test_a_connect_failure_is_retried_on_another_replica(standins: Standins) -> None:
    first, second = standins.start(2)
    # Health checks far apart: only the request itself finds out that `second` is down.
    settings = routing_settings(health_interval_s=600, eject_after_failures=5)
    async with (
        running_router([first.url, second.url], settings) as router,
        running_upstream() as upstream,
    ):
        second.stop()
        lease = await router.acquire(target(None))
        if lease.url != second.url:  # equal costs alternate: the next one goes there
            lease.release()
            lease = await router.acquire(target(None))
        assert lease.url == second.url
        try:
            answer = await complete(upstream, lease, "base")
        finally:
            lease.release()
        assert answer["status"] == 200
        assert lease.url == first.url
        assert replica(router, second).failures == 1


async def test_the_least_recently_used_adapter_is_unloaded_for_a_new_one(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    [server] = standins.start(1, "--max-loras", "2")
    await register(registry, tmp_path, "ad-a", "ad-b", "ad-c")
    async with running_router([server.url], routing_settings(), registry) as router:
        for model in ("ad-a", "ad-b", "ad-a", "ad-c"):
            await route_and_complete(router, model, 1)
        assert router.loader.stats.unload_calls == 1
    assert served_adapters(server.url) == {"ad-a", "ad-c"}


async def test_concurrent_first_use_loads_the_adapter_once(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    servers = standins.start(2)
    await register(registry, tmp_path, "ad-1")
    settings = routing_settings(adapter_miss_cost=100)
    async with running_router([s.url for s in servers], settings, registry) as router:
        requests = (route_and_complete(router, "ad-1", 1) for _ in range(20))
        served_by = await asyncio.gather(*requests)
        assert router.loader.stats.load_calls == 1
    assert len({url for [url] in served_by}) == 1


async def test_a_restarted_replica_gets_its_adapters_back_unasked(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    [server] = standins.start(1)
    await register(registry, tmp_path, "ad-1")
    async with running_router([server.url], routing_settings(), registry) as router:
        await route_and_complete(router, "ad-1", 1)
        restarted = standins.restart(server)
        assert served_adapters(restarted.url) == set()
        await wait_until(lambda: "ad-1" in served_adapters(restarted.url), "ad-1 is re-applied")
        assert router.loader.stats.reapplied == 1
        assert await route_and_complete(router, "ad-1", 1) == [server.url]


async def test_one_adapter_unloaded_by_someone_else_is_forgotten_not_reloaded(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    [server] = standins.start(1)
    await register(registry, tmp_path, "ad-a", "ad-b")
    async with running_router([server.url], routing_settings(), registry) as router:
        await route_and_complete(router, "ad-a", 1)
        await route_and_complete(router, "ad-b", 1)
        unload(server.url, "ad-a")  # as another gateway instance's LRU would
        await wait_until(lambda: "ad-a" not in replica(router, server).adapters, "ad-a forgotten")
        assert router.loader.stats.reapplied == 0
    assert served_adapters(server.url) == {"ad-b"}


async def test_a_404_for_a_lost_adapter_reloads_it_and_retries(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    [server] = standins.start(1)
    await register(registry, tmp_path, "ad-1")
    settings = routing_settings(scrape_interval_s=600)  # the sync will not notice in time
    async with running_router([server.url], settings, registry) as router:
        await route_and_complete(router, "ad-1", 1)
        unload(server.url, "ad-1")
        await route_and_complete(router, "ad-1", 1)
        assert router.loader.stats.load_calls == 2


async def test_an_adapter_unloaded_again_after_its_reload_is_a_503_to_send_again(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    """Another gateway process unloads it before each attempt reaches vLLM (LRU churn among
    workers, as on a replica that took over a dead one's adapters): the client gets a 503 it
    may send again, naming its model, not vLLM's 404 that the adapter's name does not exist."""
    [server] = standins.start(1)
    await register(registry, tmp_path, "ad-1")
    settings = routing_settings(scrape_interval_s=600)  # the sync will not notice in time
    body = b'{"model": "ad-1", "prompt": "hi", "max_tokens": 4}'
    async with (
        running_router([server.url], settings, registry) as router,
        running_upstream() as upstream,
    ):
        lease = await router.acquire(ModelTarget("my-model", ModelRoute("base", "ad-1")))

        async def unloaded_first(url: str) -> UpstreamResponse:
            unload(url, "ad-1")  # behind the router's back, as another worker's LRU would
            return await upstream.post(RequestContext("test"), url + "/v1/completions", body, False)

        try:
            with pytest.raises(GatewayError) as caught:
                await lease.send(unloaded_first)
        finally:
            lease.release()
        assert router.loader.stats.load_calls == 2  # reloaded once, as for a restart
    error = caught.value
    assert (error.status, error.code, error.type) == (503, "adapter_unavailable", "upstream_error")
    assert "`my-model`" in error.message and "ad-1" not in error.message


async def test_an_adapter_vllm_cannot_load_is_a_clear_error(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    [server] = standins.start(1)
    missing = tmp_path / "no-such-adapter"
    await registry.create(AdapterRecord("ad-bad", str(missing), "base"))
    async with running_router([server.url], routing_settings(), registry) as router:
        with pytest.raises(GatewayError) as caught:
            await router.acquire(target("ad-bad"))
        assert router.loader.stats.load_calls == 1  # vLLM refused: no retries
        assert replica(router, server).outstanding == 0
    error = caught.value
    assert (error.status, error.code, error.type) == (502, "adapter_load_failed", "upstream_error")
    assert "`ad-bad`" in error.message and "404" in error.message
    assert str(missing) not in error.message


async def test_a_deregistered_adapter_is_unloaded(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    [server] = standins.start(1)
    await register(registry, tmp_path, "ad-1")
    async with running_router([server.url], routing_settings(), registry) as router:
        await route_and_complete(router, "ad-1", 1)
        await registry.delete("ad-1")
        await wait_until(lambda: "ad-1" not in served_adapters(server.url), "ad-1 unloaded")


async def test_an_unregistered_adapter_goes_only_where_vllm_has_it(standins: Standins) -> None:
    [without] = standins.start(1)
    [holder] = standins.start(1, "--lora=static=adapters/static")
    async with running_router([without.url, holder.url], routing_settings()) as router:
        assert await route_and_complete(router, "static", 4) == [holder.url] * 4
        assert router.loader.stats.load_calls == 0


async def test_requests_go_to_replicas_serving_their_base_model(standins: Standins) -> None:
    [other] = standins.start(1, "--model", "other-base")
    [base] = standins.start(1)
    async with running_router([other.url, base.url], routing_settings()) as router:
        assert await route_and_complete(router, None, 4) == [base.url] * 4


async def test_round_robin_ignores_load_and_adapters(standins: Standins) -> None:
    servers = standins.start(3)
    settings = routing_settings(policy="round_robin")
    async with running_router([s.url for s in servers], settings) as router:
        served_by = Counter(await route_and_complete(router, None, 6))
    assert served_by == Counter({s.url: 2 for s in servers})


async def test_no_healthy_replica_is_503(standins: Standins) -> None:
    [server] = standins.start(1)
    async with running_router([server.url], routing_settings()) as router:
        server.stop()
        await wait_until(lambda: not replica(router, server).healthy, "ejected")
        with pytest.raises(GatewayError) as caught:
            await router.acquire(target(None))
    assert (caught.value.status, caught.value.code) == (503, "upstream_unavailable")


async def test_an_adapter_another_worker_streams_with_is_not_unloaded_for_a_new_one(
    standins: Standins, registry: SqliteAdapterRegistry, tmp_path: Path
) -> None:
    """Two gateway workers share a replica of one adapter slot. The second's view says ad-a is
    idle: none of its own requests use it and its last scrape predates the first worker's
    stream. Unloading it then would fail that stream's next request with vLLM's 404 (and can
    crash vLLM 0.26), so before it unloads it reads vLLM's running adapters afresh."""
    [server] = standins.start(1, "--max-loras", "1", "--itl-ms", "20")
    await register(registry, tmp_path, "ad-a", "ad-b")
    settings = routing_settings(scrape_interval_s=600)  # no periodic sync during the test
    async with (
        running_router([server.url], settings, registry) as first,
        running_upstream() as upstream,
    ):
        await route_and_complete(first, "ad-a", 1)
        async with running_router([server.url], settings, registry) as second:
            assert "ad-a" in replica(second, server).adapters
            lease = await first.acquire(target("ad-a"))
            body = b'{"model": "ad-a", "prompt": "hi", "max_tokens": 100, "stream": true}'
            ctx = RequestContext("test")

            async def stream() -> int:
                response = await lease.send(
                    lambda url: upstream.post(ctx, url + "/v1/completions", body, True)
                )
                try:
                    await upstream.read(ctx, response)
                    return response.status
                finally:
                    response.release()
                    lease.release()

            streaming = asyncio.create_task(stream())
            await wait_until(lambda: "ad-a" in running_adapters(server.url), "ad-a runs")
            assert await route_and_complete(second, "ad-b", 1) == [server.url]
            assert await streaming == 200
            assert second.loader.stats.unload_calls == 0
    assert served_adapters(server.url) == {"ad-a", "ad-b"}


def running_adapters(url: str) -> set[str]:
    text = httpx.get(url + "/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("vllm:lora_requests_info"))
    running = line.split('running_lora_adapters="', 1)[1].split('"', 1)[0]
    return set(filter(None, running.split(",")))
