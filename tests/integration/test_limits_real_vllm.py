"""Early dispatch against a real vLLM: a request sent upstream before Redis refused it is
answered 429, and vLLM stops generating it (gateway/limits/early.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gateway import Gateway, gateways_sharing_redis, limited_key
from tests.fixtures.metrics import metric_value
from tests.fixtures.real_vllm import RealVllm, assert_generation_stopped

pytestmark = pytest.mark.vllm
EARLY = "vllm_gateway_rate_limit_early_dispatches_total"


def test_refused_early_request_is_aborted_in_vllm(
    real_vllm: RealVllm, redis_url: str, tmp_path: Path
) -> None:
    with gateways_sharing_redis(real_vllm.url, redis_url, tmp_path, 2) as (here, there):
        key = limited_key(here, {"requests_per_minute": 8})

        def send(gateway: Gateway, max_tokens: int) -> httpx.Response:
            return httpx.post(
                gateway.url + "/v1/completions",
                json={
                    "model": "base",
                    "prompt": "def main():",
                    "max_tokens": max_tokens,
                    "ignore_eos": True,
                    "stream": True,
                },
                headers={"authorization": f"Bearer {key}"},
                timeout=60,
            )

        # Redis answered first: 7 more fit, of which each of the two gateways may send up to
        # a quarter early; the other gateway's 7 are sent at once, so that this one's count
        # is still fresh (FRESH_S) when its next request comes
        assert send(here, 2).status_code == 200
        with ThreadPoolExecutor(7) as pool:
            sent = list(pool.map(lambda _: send(there, 2).status_code, range(7)))
        assert sent == [200] * 7
        generated = metric_value(real_vllm.url, "vllm:generation_tokens_total")
        refused = send(here, 400)  # goes to vLLM at once, then Redis refuses it
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert metric_value(here.url, EARLY, outcome="refused") == 1
        assert_generation_stopped(real_vllm.url, generated)
