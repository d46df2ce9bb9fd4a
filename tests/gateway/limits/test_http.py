"""Limits through a real gateway process, as clients see them: the openai SDK's RateLimitError,
the x-ratelimit-* headers, budgets, concurrency, and settlement with the upstream's usage."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import orjson
import pytest

from gateway.settings import LimitsSettings
from gateway.surfaces import ChatCompletions
from tests.fixtures.gateway import Gateway
from tests.fixtures.metrics import metric_value
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults

pytestmark = pytest.mark.limits_e2e
DEFAULT_MAX_TOKENS = LimitsSettings().default_max_tokens


def key_with(gateway: Gateway, **limits: int) -> str:
    created = gateway.admin(
        "POST", "/keys", json={"tenant_id": gateway.tenant_id, "name": "limited", "limits": limits}
    )
    assert created.status_code == 201, created.text
    return created.json()["secret"]


def chat_body(content: str, max_tokens: int, stream: bool = False) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "base",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def post(gateway: Gateway, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def usage_of(response: httpx.Response, stream: bool) -> dict[str, int]:
    if not stream:
        return response.json()["usage"]
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: {")]
    return next(e["usage"] for e in map(orjson.loads, events) if e.get("usage"))


def test_openai_sdk_sees_headers_and_rate_limit_error(gateway: Gateway) -> None:
    key = key_with(gateway, requests_per_minute=2, tokens_per_minute=100_000)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "hello there"}]
    raw = client.chat.completions.with_raw_response.create(
        model="base", messages=messages, max_tokens=5
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    client.chat.completions.create(model="base", messages=messages, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="base", messages=messages, max_tokens=5)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "requests"
    assert "requests per minute" in caught.value.message
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    refusals = "vllm_gateway_rate_limit_rejections_total"
    assert metric_value(gateway.url, refusals, limit="requests_per_minute", tenant="acme") >= 1


def test_budget_exhausted_is_insufficient_quota(gateway: Gateway) -> None:
    key = key_with(gateway, tokens_per_day=300)
    assert post(gateway, key, chat_body("spend some", 100)).status_code == 200
    refused = post(gateway, key, chat_body("spend more", 400))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and "tokens per day" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_settlement_charges_the_real_usage(gateway: Gateway, stream: bool) -> None:
    limit = 100_000
    key = key_with(gateway, tokens_per_minute=limit)
    first = post(gateway, key, chat_body("one two three four", 300, stream))
    assert first.status_code == 200
    used = usage_of(first, stream)["total_tokens"]
    body = chat_body("five six", 50, stream)
    second = post(gateway, key, body)
    # the first request's 300-token reservation was replaced by its real usage
    chat = ChatCompletions()
    request = chat.parse(orjson.dumps(body))
    expected = limit - used - chat.estimate_tokens(request, DEFAULT_MAX_TOKENS)
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == expected


def test_concurrency_slot_is_held_until_the_request_ends(
    gateway: Gateway, standin: ServerProcess
) -> None:
    key = key_with(gateway, max_concurrent=1)
    set_faults(standin, ttft_ms=1500)
    slow: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: slow.append(post(gateway, key, chat_body("a", 2))))
    holder.start()
    deadline = time.monotonic() + 10
    while metric_value(standin.url, "vllm:num_requests_running") < 1:  # it holds the slot
        assert time.monotonic() < deadline, "the slow request never reached the upstream"
        time.sleep(0.02)
    second = post(gateway, key, chat_body("b", 2))
    holder.join()
    assert second.status_code == 429
    assert "concurrent requests" in second.json()["error"]["message"]
    assert slow[0].status_code == 200
    set_faults(standin, ttft_ms=0)
    assert post(gateway, key, chat_body("c", 2)).status_code == 200
