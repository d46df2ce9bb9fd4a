"""The gateway in front of a real vLLM (CPU build, tiny model, LoRA adapters built offline).

Through the gateway, clients must get what vLLM direct gives: the same greedy outputs per
adapter, the same streams, vLLM's own errors, and a disconnect must abort the generation.
"""

from __future__ import annotations

import random
import uuid

import httpx
import openai
import orjson
import pytest

from tests.fixtures.gateway import Gateway
from tests.fixtures.metrics import metric_value
from tests.fixtures.real_vllm import RealVllm, assert_generation_stopped

pytestmark = pytest.mark.vllm

PROMPT = "def main():"
MODELS = ["base", "tenant-a", "tenant-b"]


def completion(model: str, **extra: object) -> dict:
    return {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": 12,
        "temperature": 0,
        "return_token_ids": True,
        **extra,
    }


def sse_chunks(body: bytes) -> list[dict]:
    events = [e for e in body.split(b"\n\n") if e and e != b"data: [DONE]"]
    return [orjson.loads(e.removeprefix(b"data: ")) for e in events]


@pytest.mark.parametrize("model", MODELS)
def test_greedy_outputs_equal_direct_and_golden(
    real_vllm: RealVllm, vllm_gateway: Gateway, model: str
) -> None:
    golden = real_vllm.golden([PROMPT], 12)[model][0]
    direct = httpx.post(real_vllm.url + "/v1/completions", json=completion(model), timeout=60)
    proxied = httpx.post(
        vllm_gateway.url + "/v1/completions",
        json=completion(model),
        headers=vllm_gateway.headers,
        timeout=60,
    )
    assert proxied.status_code == 200, proxied.text
    direct_choice, proxied_choice = direct.json()["choices"][0], proxied.json()["choices"][0]
    assert proxied_choice["token_ids"] == direct_choice["token_ids"] == golden.token_ids
    assert proxied_choice["text"] == direct_choice["text"]
    assert proxied.json()["model"] == model
    assert proxied.json()["usage"] == direct.json()["usage"]


@pytest.mark.parametrize("model", ["base", "tenant-a"])
def test_streams_equal_direct(real_vllm: RealVllm, vllm_gateway: Gateway, model: str) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 10,
        "temperature": 0,
        "stream": True,
    }
    direct = httpx.post(real_vllm.url + "/v1/chat/completions", json=body, timeout=60)
    proxied = httpx.post(
        vllm_gateway.url + "/v1/chat/completions",
        json=body,
        headers=vllm_gateway.headers,
        timeout=60,
    )
    assert proxied.content.endswith(b"data: [DONE]\n\n")
    # vLLM moves system_fingerprint from the last content chunk to the usage chunk when
    # include_usage is on, which the gateway always asks for.
    strip = ("id", "created", "system_fingerprint")
    direct_chunks = [
        {k: v for k, v in c.items() if k not in strip} for c in sse_chunks(direct.content)
    ]
    proxied_chunks = [
        {k: v for k, v in c.items() if k not in strip} for c in sse_chunks(proxied.content)
    ]
    assert proxied_chunks == direct_chunks  # the forced usage chunk is not passed on

    asked = {**body, "stream_options": {"include_usage": True}}
    with_usage = sse_chunks(
        httpx.post(
            vllm_gateway.url + "/v1/chat/completions",
            json=asked,
            headers=vllm_gateway.headers,
            timeout=60,
        ).content
    )
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["completion_tokens"] == 10


def test_openai_sdk_streams_through_the_gateway(vllm_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=vllm_gateway.url + "/v1", api_key=vllm_gateway.api_key)
    whole = client.completions.create(model="tenant-b", prompt=PROMPT, max_tokens=8, temperature=0)
    streamed = client.completions.create(
        model="tenant-b", prompt=PROMPT, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == (
        whole.choices[0].text
    )


def test_vllm_errors_are_relayed(vllm_gateway: Gateway) -> None:
    client = openai.OpenAI(
        base_url=vllm_gateway.url + "/v1", api_key=vllm_gateway.api_key, max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as too_many:
        client.completions.create(model="base", prompt=PROMPT, max_tokens=100_000)
    assert too_many.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="base", prompt="word " * 2000, max_tokens=5)
    with pytest.raises(openai.BadRequestError):  # also when streaming: plain JSON, not SSE
        client.completions.create(model="base", prompt="word " * 2000, max_tokens=5, stream=True)


def test_client_disconnect_aborts_the_generation(
    real_vllm: RealVllm, vllm_gateway: Gateway
) -> None:
    """vLLM 0.32 does not count a disconnect in request_success_total{finished_reason="abort"}
    (measured: the counter stays at 0), so the proof is that generation stops: far fewer than
    the 400 tokens asked for (ignore_eos) are generated and no request finishes by length."""
    generated = metric_value(real_vllm.url, "vllm:generation_tokens_total")
    finished = metric_value(real_vllm.url, "vllm:request_success_total")
    with httpx.stream(
        "POST",
        vllm_gateway.url + "/v1/completions",
        json={**completion("base"), "max_tokens": 400, "ignore_eos": True, "stream": True},
        headers=vllm_gateway.headers,
        timeout=60,
    ) as response:
        events = response.iter_raw()
        for _ in range(3):
            next(events)
    assert_generation_stopped(real_vllm.url, generated)
    assert metric_value(real_vllm.url, "vllm:request_success_total") == finished


def test_tenants_do_not_share_the_prefix_cache_through_the_gateway(
    real_vllm: RealVllm, vllm_gateway: Gateway
) -> None:
    """The gateway salts every request with its tenant and drops a client's own salt: the
    same long prompt hits the cache for the tenant that sent it, never for another one."""
    _, other_key = vllm_gateway.new_tenant(
        f"other-{uuid.uuid4().hex[:8]}", {"base": {"base_model": "base"}}
    )
    prompt = " ".join(random.Random(uuid.uuid4().int).choices(["alpha", "bravo", "delta"], k=150))

    def send(key: str) -> float:
        response = httpx.post(
            vllm_gateway.url + "/v1/completions",
            json={"model": "base", "prompt": prompt, "max_tokens": 2, "cache_salt": "shared"},
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return metric_value(real_vllm.url, "vllm:prefix_cache_hits_total")

    first = send(vllm_gateway.api_key)
    again = send(vllm_gateway.api_key)
    other_tenant = send(other_key)
    assert again > first
    assert other_tenant == again
