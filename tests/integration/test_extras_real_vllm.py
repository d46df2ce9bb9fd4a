"""vLLM's extra routes through the gateway in front of a real vLLM (CPU build, tiny model):
/tokenize and /detokenize answer what vLLM direct answers, under the tenant's model names,
and what a generative model cannot do (rerank, score) is vLLM's error, relayed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway import Gateway
from tests.fixtures.real_vllm import RealVllm

pytestmark = pytest.mark.vllm

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "def main():"}]


def both(
    real_vllm: RealVllm, gateway: Gateway, path: str, body: Mapping[str, Any]
) -> tuple[httpx.Response, httpx.Response]:
    direct = httpx.post(real_vllm.url + path, json=body, timeout=30)
    proxied = httpx.post(gateway.url + path, json=body, headers=gateway.headers, timeout=30)
    return direct, proxied


@pytest.mark.parametrize("model", ["base", "tenant-a"])
def test_tokenize_and_detokenize_equal_direct(
    real_vllm: RealVllm, vllm_gateway: Gateway, model: str
) -> None:
    prompt = {"model": model, "prompt": "def main():", "return_token_strs": True}
    direct, proxied = both(real_vllm, vllm_gateway, "/tokenize", prompt)
    assert direct.status_code == proxied.status_code == 200, proxied.text
    assert proxied.json() == direct.json()
    assert proxied.json()["count"] == len(proxied.json()["tokens"]) > 0
    chat = {"model": model, "messages": MESSAGES}
    direct, proxied = both(real_vllm, vllm_gateway, "/tokenize", chat)
    assert proxied.status_code == 200, proxied.text
    assert proxied.json() == direct.json()
    tokens = {"model": model, "tokens": direct.json()["tokens"]}
    direct, proxied = both(real_vllm, vllm_gateway, "/detokenize", tokens)
    assert proxied.status_code == 200, proxied.text
    assert proxied.json() == direct.json()
    assert "main" in proxied.json()["prompt"]


def test_names_the_tenant_lacks_are_404_and_vllms_own_errors_relayed(
    real_vllm: RealVllm, vllm_gateway: Gateway
) -> None:
    headers = vllm_gateway.headers
    url = vllm_gateway.url
    unknown = httpx.post(url + "/tokenize", json={"model": "nope", "prompt": "x"}, headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    direct, proxied = both(
        real_vllm, vllm_gateway, "/detokenize", {"model": "base", "tokens": [-1]}
    )
    assert direct.status_code == proxied.status_code == 400
    assert proxied.json() == direct.json()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/rerank", {"query": "a", "documents": ["b", "c"]}),
        ("/v1/score", {"text_1": "a", "text_2": "b"}),
        ("/classify", {"input": "a"}),
    ],
)
def test_what_a_generative_model_cannot_do_is_vllms_error(
    real_vllm: RealVllm, vllm_gateway: Gateway, path: str, body: dict[str, object]
) -> None:
    direct, proxied = both(real_vllm, vllm_gateway, path, {"model": "base", **body})
    assert direct.status_code >= 400
    assert proxied.status_code == direct.status_code
    assert proxied.json()["error"]["message"] == "The model server answered: Not Found"
