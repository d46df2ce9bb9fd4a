"""The replica control calls over the in-memory transport: what each sends, its own bound per
call, and every failure to answer as `ReplicaUnreachable`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from gateway.core.errors import UpstreamBadGateway, UpstreamUnavailable
from gateway.replicas.control import READ_TIMEOUT_S, ReplicaClient, ReplicaUnreachable
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse, MemoryTransport

URL = "http://replica:8000"
MODELS = {
    "data": [
        {"id": "base", "root": "base"},
        {"id": "ad-1", "root": "/adapters/ad-1", "parent": "base"},
    ]
}


class Replica:
    """Answers as vLLM does after `delay_s`, or as `fault` says: an exception to raise, or a
    status."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.fault: Exception | int | None = None
        self.responses: list[MemoryResponse] = []

    async def __call__(self, request: UpstreamRequest) -> MemoryResponse:
        await asyncio.sleep(self.delay_s)
        if isinstance(self.fault, Exception):
            raise self.fault
        path = request.url.removeprefix(URL)
        body = orjson.dumps(MODELS) if path == "/v1/models" else b"vllm:num_requests_waiting 0\n"
        response = MemoryResponse(self.fault or 200, body)
        self.responses.append(response)
        return response


@pytest.fixture
def replica() -> Replica:
    return Replica()


@pytest_asyncio.fixture(loop_scope="function")
async def transport(replica: Replica) -> AsyncIterator[MemoryTransport]:
    transport = MemoryTransport(replica)
    yield transport
    await transport.close()


async def client(transport: MemoryTransport, health_timeout_s: float = 1.0) -> ReplicaClient:
    replica_client = ReplicaClient(transport, "sk-up", health_timeout_s, load_timeout_s=30.0)
    await replica_client.start()
    return replica_client


async def test_each_call_has_its_own_bound_and_the_key(
    replica: Replica, transport: MemoryTransport
) -> None:
    control = await client(transport)
    assert await control.healthy(URL)
    assert "vllm:num_requests_waiting" in await control.metrics(URL)
    served = await control.models(URL)
    assert (served.base_models, served.adapters) == (
        frozenset({"base"}),
        {"ad-1": "/adapters/ad-1"},
    )
    await control.load_adapter(URL, "ad-2", "/adapters/ad-2", in_place=True)
    await control.unload_adapter(URL, "ad-2")
    sent = [(r.method, r.url.removeprefix(URL), r.timeout_s) for r in transport.requests]
    assert sent == [
        ("GET", "/health", 1.0),
        ("GET", "/metrics", READ_TIMEOUT_S),
        ("GET", "/v1/models", READ_TIMEOUT_S),
        ("POST", "/v1/load_lora_adapter", 30.0),
        ("POST", "/v1/unload_lora_adapter", READ_TIMEOUT_S),
    ]
    assert all(r.headers["authorization"] == "Bearer sk-up" for r in transport.requests)
    load = transport.requests[3]
    assert load.headers["content-type"] == "application/json"
    assert orjson.loads(load.body or b"") == {
        "lora_name": "ad-2",
        "lora_path": "/adapters/ad-2",
        "load_inplace": True,
    }
    assert all(response.released for response in replica.responses)


async def test_a_slow_or_failing_health_check_is_unhealthy(
    replica: Replica, transport: MemoryTransport
) -> None:
    replica.delay_s = 0.5
    assert not await (await client(transport, health_timeout_s=0.01)).healthy(URL)
    replica.delay_s = 0.0
    control = await client(transport)
    replica.fault = 503
    assert not await control.healthy(URL)
    replica.fault = UpstreamUnavailable("cannot connect (test)")
    assert not await control.healthy(URL)


@pytest.mark.parametrize(
    "fault",
    [UpstreamUnavailable("cannot connect (test)"), UpstreamBadGateway("no valid response"), 500],
    ids=["unavailable", "bad-gateway", "http-500"],
)
async def test_no_usable_answer_is_unreachable(
    replica: Replica, transport: MemoryTransport, fault: Exception | int
) -> None:
    control = await client(transport)
    replica.fault = fault
    with pytest.raises(ReplicaUnreachable):
        await control.metrics(URL)
    with pytest.raises(ReplicaUnreachable):
        await control.models(URL)
