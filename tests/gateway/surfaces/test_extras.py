"""vLLM's extra routes (tokenize, detokenize, rerank, score, pooling, classify): the codecs
(parse, texts, estimates, tenant fields, the route table), the pipeline end to end in this
process (model names, isolation, input policy, usage into the limiter, vLLM's errors), and
tokenize / detokenize through a gateway process in front of the stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.core.errors import GatewayError
from gateway.core.request import InferenceRequest
from gateway.limits.estimate import text_tokens
from gateway.surfaces import SURFACES, ChatCompletions, Surface
from gateway.surfaces.extras import Classify, Detokenize, Pooling, Rerank, Score, Tokenize
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import Gateway
from tests.fixtures.in_process import FakeVllm, in_process_gateway
from tests.fixtures.processes import ServerProcess
from tests.gateway.surfaces.test_responses import new_key

TOKENIZE = Tokenize("/tokenize")
DETOKENIZE = Detokenize("/detokenize")
RERANK = Rerank("/v1/rerank")
SCORE = Score("/v1/score")
POOLING = Pooling("/pooling")
CLASSIFY = Classify("/classify")
RANKER = {"ranker": {"base_model": "base", "adapter": "tenant-a"}}
RERANK_USAGE = {"prompt_tokens": 14, "total_tokens": 14}
NO_WORDS = {"rules": [{"name": "w", "detector": "deny_terms", "terms": ["secret plan"]}]}


def parse(surface: Surface, **body: Any) -> InferenceRequest:
    return surface.parse(orjson.dumps(body))


def refused(surface: Surface, **body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse(surface, **body)
    assert caught.value.status == 400
    return caught.value


def texts(surface: Surface, **body: Any) -> list[tuple[str, str]]:
    return [(slot.param, slot.text) for slot in surface.texts(parse(surface, **body)).slots]


# --- the codecs --------------------------------------------------------------------------


def test_every_route_is_served_once_and_a_codec_class_per_path() -> None:
    paths = [surface.path for surface in SURFACES]
    assert len(paths) == len(set(paths))
    extras = {surface.path: type(surface) for surface in SURFACES}
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        assert extras[path] is Rerank
    assert extras["/v1/score"] is extras["/score"] is Score
    assert (extras["/tokenize"], extras["/detokenize"]) == (Tokenize, Detokenize)
    assert (extras["/pooling"], extras["/classify"]) == (Pooling, Classify)


def test_the_model_is_read_and_a_request_is_always_answered_whole() -> None:
    request = parse(RERANK, model="ranker", query="q", documents=["d"], stream=True)
    assert (request.model, request.stream, request.client_wants_usage) == ("ranker", False, False)
    assert parse(TOKENIZE, prompt="hi").model is None  # vLLM serves its base model
    assert refused(TOKENIZE, model=3, prompt="hi").param == "model"


@pytest.mark.parametrize(
    ("surface", "body", "param"),
    [
        (TOKENIZE, {}, "prompt"),
        (TOKENIZE, {"messages": "hi"}, "messages"),
        (POOLING, {"input": {"x": 1}}, "input"),
        (CLASSIFY, {"messages": []}, "messages"),
        (DETOKENIZE, {"tokens": ["a"]}, "tokens"),
        (DETOKENIZE, {}, "tokens"),
        (RERANK, {"documents": ["d"]}, "query"),
        (RERANK, {"query": "q"}, "documents"),
        (RERANK, {"query": "q", "documents": [["nested"]]}, "documents"),
        (RERANK, {"query": {"content": "not parts"}, "documents": "d"}, "query"),
        (SCORE, {"text_1": "a"}, "text_2"),
        (SCORE, {}, "text_1"),
    ],
)
def test_missing_or_mistyped_fields_are_400_naming_them(
    surface: Surface, body: dict[str, Any], param: str
) -> None:
    assert refused(surface, **body).param == param


def test_tokenize_pooling_and_classify_read_a_prompt_or_messages_as_their_surfaces_do() -> None:
    assert texts(TOKENIZE, prompt="hello") == [("prompt", "hello")]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert texts(TOKENIZE, messages=messages) == [
        ("messages[0].content", "be brief"),
        ("messages[1].content", "hi"),
    ]
    assert texts(POOLING, input=["a", "b"]) == [("input[0]", "a"), ("input[1]", "b")]
    assert texts(CLASSIFY, messages=messages) == texts(TOKENIZE, messages=messages)
    chat = ChatCompletions().parse(orjson.dumps({"messages": messages}))
    estimate = ChatCompletions().estimate_prompt_tokens(chat)
    assert CLASSIFY.estimate_tokens(parse(CLASSIFY, messages=messages), 10_000) == estimate
    assert POOLING.estimate_tokens(parse(POOLING, input=[1, 2, 3]), 10_000) == 3
    assert POOLING.texts(parse(POOLING, input=[1, 2, 3])).unreadable  # token ids


def test_rerank_and_score_read_every_text_and_estimate_every_pair() -> None:
    documents = ["first doc", {"content": [{"type": "text", "text": "second"}]}]
    assert texts(RERANK, query="which one", documents=documents) == [
        ("query", "which one"),
        ("documents[0]", "first doc"),
        ("documents[1].content[0].text", "second"),
    ]
    query, doc, second = (1 + text_tokens(len(t)) for t in ("which one", "first doc", "second"))
    request = parse(RERANK, query="which one", documents=documents)
    assert RERANK.estimate_tokens(request, 10_000) == 2 * query + doc + second  # query per pair
    assert texts(SCORE, text_1=["a", "b"], text_2=["c", "d"])[3] == ("text_2[1]", "d")
    assert SCORE.estimate_prompt_tokens(parse(SCORE, text_1=["a", "b"], text_2=["c", "d"])) == 8
    assert texts(SCORE, queries="q", items=["i"]) == [("queries", "q"), ("items[0]", "i")]


def test_detokenize_has_no_text_and_is_estimated_by_its_ids() -> None:
    request = parse(DETOKENIZE, tokens=[5, 6, 7])
    read = DETOKENIZE.texts(request)
    assert (read.slots, read.unreadable) == ([], False)
    assert DETOKENIZE.estimate_tokens(request, 10_000) == 3


def test_only_the_pooling_requests_take_the_tenant_fields() -> None:
    # vLLM 0.32: PoolingBasicRequestMixin has cache_salt and priority; TokenizeRequest not
    assert [s.tenant_fields for s in (RERANK, SCORE, POOLING, CLASSIFY)] == [True] * 4
    assert [s.tenant_fields for s in (TOKENIZE, DETOKENIZE)] == [False, False]


def test_the_upstream_body_is_the_clients_bytes_unless_renamed() -> None:
    raw = b'{"model":"ranker","query":"q","documents":["d"]}'
    request = RERANK.parse(raw)
    assert RERANK.upstream_body(request, "ranker") is raw
    assert orjson.loads(RERANK.upstream_body(request, "tenant-a"))["model"] == "tenant-a"


# --- in process: the pipeline end to end -------------------------------------------------


def rerank_answer(model: str) -> dict[str, Any]:
    results = [{"index": 0, "document": {"text": "d", "multi_modal": None}, "relevance_score": 1}]
    return {"id": "rerank-1", "model": model, "usage": RERANK_USAGE, "results": results}


async def rerank(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    return MemoryResponse(200, orjson.dumps(rerank_answer(body["model"])))


async def tokenize(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
    answer = {"count": 2, "max_model_len": 512, "tokens": [1, 2], "token_strs": None}
    return MemoryResponse(200, orjson.dumps(answer))


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
async def test_rerank_is_renamed_both_ways_with_the_tenants_salt(tmp_path: Path, path: str) -> None:
    fake = FakeVllm()
    fake.routes[path] = rerank
    async with in_process_gateway(fake, tmp_path, RANKER) as (client, key):
        body = {"model": "ranker", "query": "q", "documents": ["d"], "cache_salt": "mine"}
        response = await client.post(path, json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert response.json() == rerank_answer("ranker")
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert fake.inference_requests[0].url.endswith(path)
    assert sent["model"] == "tenant-a"
    assert sent["cache_salt"] != "mine" and len(sent["cache_salt"]) == 64


async def test_tokenize_gets_no_tenant_fields_and_names_the_tenant_lacks_are_404(
    tmp_path: Path,
) -> None:
    fake = FakeVllm()
    fake.routes["/tokenize"] = tokenize
    async with in_process_gateway(fake, tmp_path, RANKER) as (client, key):
        headers = {"authorization": f"Bearer {key}"}
        body = {"model": "ranker", "prompt": "hi", "cache_salt": "mine", "priority": -5}
        served = await client.post("/tokenize", json=body, headers=headers)
        raw_adapter = await client.post(
            "/tokenize", json={**body, "model": "tenant-a"}, headers=headers
        )
        anonymous = await client.post("/tokenize", json=body)
    assert served.status_code == 200, served.text
    assert served.json()["tokens"] == [1, 2]
    sent = json.loads(fake.inference_requests[0].body or b"")
    assert sent == {"model": "tenant-a", "prompt": "hi"}  # the client's fields stripped
    assert raw_adapter.status_code == 404
    assert raw_adapter.json()["error"]["code"] == "model_not_found"
    assert anonymous.status_code == 401
    assert len(fake.inference_requests) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/rerank", {"query": "a secret plan", "documents": ["d"]}),
        ("/v1/rerank", {"query": "q", "documents": ["ok", "the secret plan"]}),
        ("/v1/score", {"text_1": "q", "text_2": ["the secret plan"]}),
        ("/classify", {"input": "the secret plan"}),
        ("/tokenize", {"messages": [{"role": "user", "content": "the secret plan"}]}),
    ],
)
async def test_the_input_policy_reads_every_text(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    fake = FakeVllm()
    async with in_process_gateway(fake, tmp_path, safety={"policies": {"p": NO_WORDS}}) as (
        client,
        _,
    ):
        headers = await new_key(client, {"base": {"base_model": "base"}}, policy="p")
        response = await client.post(path, json={"model": "base", **body}, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert fake.inference_requests == []


async def test_the_usage_vllm_reports_settles_the_reservation(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/rerank"] = rerank
    limit = 100_000
    async with in_process_gateway(fake, tmp_path, RANKER) as (client, _):
        headers = await new_key(client, RANKER, limits={"tokens_per_minute": limit})
        body = {"model": "ranker", "query": "which one", "documents": ["a", "b", "c"]}
        first = await client.post("/v1/rerank", json=body, headers=headers)
        second = await client.post("/v1/rerank", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    estimate = RERANK.estimate_tokens(parse(RERANK, **body), 10_000)
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == limit - estimate
    # the first reservation was replaced by vLLM's usage (14 tokens)
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == limit - 14 - estimate


async def test_an_answer_without_usage_is_charged_nothing(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/tokenize"] = tokenize
    limit = 100_000
    async with in_process_gateway(fake, tmp_path) as (client, _):
        headers = await new_key(
            client, {"base": {"base_model": "base"}}, limits={"tokens_per_minute": limit}
        )
        body = {"model": "base", "prompt": "a prompt of some length"}
        first = await client.post("/tokenize", json=body, headers=headers)
        second = await client.post("/tokenize", json=body, headers=headers)
    estimate = TOKENIZE.estimate_tokens(parse(TOKENIZE, **body), 10_000)
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == limit - estimate
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == limit - estimate


async def test_what_the_model_cannot_do_is_vllms_error_relayed(tmp_path: Path) -> None:
    async def generative(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        return MemoryResponse(404, b'{"detail":"Not Found"}')  # vLLM 0.32, a generative model

    fake = FakeVllm()
    fake.routes["/v1/score"] = generative
    async with in_process_gateway(fake, tmp_path) as (client, key):
        response = await client.post(
            "/v1/score",
            json={"model": "base", "text_1": "a", "text_2": "b"},
            headers={"authorization": f"Bearer {key}"},
        )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "The model server answered: Not Found"


# --- a gateway process in front of the stand-in ------------------------------------------


def test_tokenize_and_detokenize_through_the_gateway_equal_direct(
    standin: ServerProcess, gateway: Gateway
) -> None:
    headers = gateway.headers
    body = {"model": "tenant-a", "prompt": "hello there", "return_token_strs": True}
    direct = httpx.post(standin.url + "/tokenize", json=body, timeout=10)
    proxied = httpx.post(gateway.url + "/tokenize", json=body, headers=headers, timeout=10)
    assert proxied.status_code == 200, proxied.text
    assert proxied.json() == direct.json()
    messages = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
    chat = httpx.post(gateway.url + "/tokenize", json=messages, headers=headers, timeout=10)
    assert chat.json() == httpx.post(standin.url + "/tokenize", json=messages, timeout=10).json()
    tokens = {"model": "tenant-a", "tokens": direct.json()["tokens"]}
    back = httpx.post(gateway.url + "/detokenize", json=tokens, headers=headers, timeout=10)
    assert back.status_code == 200, back.text
    assert back.json() == httpx.post(standin.url + "/detokenize", json=tokens, timeout=10).json()
    unknown = httpx.post(
        gateway.url + "/tokenize", json={**body, "model": "nope"}, headers=headers, timeout=10
    )
    assert unknown.status_code == 404
