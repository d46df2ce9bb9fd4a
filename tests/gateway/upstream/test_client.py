"""The pipeline's upstream client over the in-memory transport: the headers it adds and the
upstream time it counts into the request's context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.core.context import RequestContext
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.client import UpstreamClient
from gateway.upstream.memory import MemoryResponse, MemoryTransport

WAIT_S = 0.05


async def slow_answer(request: UpstreamRequest) -> MemoryResponse:
    await asyncio.sleep(WAIT_S)
    return MemoryResponse(200, b"{}")


async def test_a_post_carries_the_request_id_the_key_and_the_stream_flag() -> None:
    transport = MemoryTransport(slow_answer)
    await transport.start()
    client = UpstreamClient(transport, "sk-upstream")
    ctx = RequestContext("req-1")
    await client.post(ctx, "http://replica/v1/completions", b'{"a": 1}', stream=True)
    [request] = transport.requests
    assert (request.method, request.url, request.body) == (
        "POST",
        "http://replica/v1/completions",
        b'{"a": 1}',
    )
    assert request.stream and request.timeout_s is None
    assert request.headers == {
        "content-type": "application/json",
        "x-request-id": "req-1",
        "authorization": "Bearer sk-upstream",
    }


async def test_a_get_without_a_key_sends_no_authorization() -> None:
    transport = MemoryTransport(slow_answer)
    await transport.start()
    await UpstreamClient(transport, None).get(RequestContext("req-2"), "http://replica/v1/models")
    [request] = transport.requests
    assert (request.method, request.body, request.stream) == ("GET", None, False)
    assert request.headers == {"x-request-id": "req-2"}


async def test_the_wait_for_headers_and_body_is_upstream_time() -> None:
    async def slow_body(request: UpstreamRequest) -> MemoryResponse:
        await asyncio.sleep(WAIT_S)

        async def body() -> AsyncIterator[bytes]:
            await asyncio.sleep(WAIT_S)
            yield b"{}"

        return MemoryResponse(200, chunks=body())

    transport = MemoryTransport(slow_body)
    await transport.start()
    client = UpstreamClient(transport, None)
    ctx = RequestContext("req-3")
    response = await client.post(ctx, "http://replica/v1/completions", b"{}", stream=False)
    assert ctx.upstream_seconds >= WAIT_S
    assert await client.read(ctx, response) == b"{}"
    assert ctx.upstream_seconds >= 2 * WAIT_S
