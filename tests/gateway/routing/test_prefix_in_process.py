"""Prefix-aware routing through the whole gateway, in this process, over two fake replicas:
a tenant's requests that share a system prompt go to one replica, where round-robin spreads
them."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.in_process import REPLICA, FakeVllm, in_process_gateway

OTHER_REPLICA = "http://127.0.0.2:9"
SYSTEM = "You answer questions about ACME's products, politely and briefly. " * 200


class TwoReplicas(FakeVllm):
    """Two replicas behind one memory transport: each answers as FakeVllm does, and the
    inference requests each one served are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.served: Counter[str] = Counter()
        self.routes["/v1/chat/completions"] = self._complete

    async def _answer(self, request: UpstreamRequest) -> MemoryResponse:
        replica = OTHER_REPLICA if request.url.startswith(OTHER_REPLICA) else REPLICA
        if request.method == "POST":
            self.served[replica] += 1
        path = request.url.removeprefix(replica)
        return await super()._answer(replace(request, url=REPLICA + path))

    async def _complete(self, request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        answer = {
            "id": "c",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }
        return MemoryResponse(200, orjson.dumps(answer))


@pytest.mark.parametrize(("policy", "replicas_used"), [("prefix", 1), ("round_robin", 2)])
async def test_a_shared_system_prompt_goes_to_one_replica(
    tmp_path: Path, policy: str, replicas_used: int
) -> None:
    fake = TwoReplicas()
    async with in_process_gateway(
        fake,
        tmp_path,
        upstream={"url": REPLICA, "replicas": [OTHER_REPLICA]},
        routing={"policy": policy},
    ) as (client, key):
        for question in range(8):
            body = {
                "model": "base",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"question {question}"},
                ],
            }
            answer = await client.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200, answer.text
    assert sum(fake.served.values()) == 8
    assert len(fake.served) == replicas_used, fake.served
