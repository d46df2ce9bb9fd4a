"""The ledger through a real gateway process in front of the stand-in: the admin usage endpoint
shows exactly the usage the clients saw, streams count like whole answers, refusals and
failures are counted, and counts survive a restart.

The stand-in is deterministic per (model, prompt), so a stream and a whole answer for the same
request generate the same tokens: that is what lets streams without `include_usage` be checked.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.gateway import ACME_MODELS, Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis import delete_prefixed_keys
from tests.fixtures.standin import set_faults

PROMPTS = ["hello there", "tell me a story about a fox", "one two three four five six"]
MODELS = ["base", "tenant-a"]
WAIT_S = 15.0
TOKEN_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def chat(
    gateway: Gateway, secret: str, model: str, prompt: str, stream: bool, include_usage: bool
) -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 12,
        "stream": stream,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {secret}"}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def usage_seen(response: httpx.Response) -> dict[str, int] | None:
    """The token counts the client was shown: the body's, or a stream's usage chunk's."""
    if response.headers["content-type"].startswith("application/json"):
        usages = [response.json()["usage"]]
    else:
        events = [e[6:] for e in response.content.split(b"\n\n") if e.startswith(b"data: {")]
        usages = [chunk["usage"] for chunk in map(orjson.loads, events) if chunk.get("usage")]
    assert len(usages) <= 1
    return {name: usages[0][name] for name in TOKEN_COUNTS} if usages else None


def usage_report(gateway: Gateway, **params: str) -> dict[str, Any]:
    response = gateway.admin("GET", "/usage", params=params)
    assert response.status_code == 200, (
        f"GET /admin/v1/usage answered {response.status_code} {response.text[:200]}: is the "
        "ledger wired into the gateway (AdminState.ledger, ledger.record at the end of each "
        "request, ledger.run in the lifespan)?"
    )
    return response.json()


def report_when_counted(gateway: Gateway, tenant_id: str, requests: int, **params: str) -> dict:
    """The tenant's report once it counts `requests` (a request is recorded just after its
    answer is sent, so the client may be a moment ahead of the ledger)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        report = usage_report(gateway, tenant_id=tenant_id, **params)
        if report["totals"]["requests"] >= requests or time.monotonic() > deadline:
            return report
        time.sleep(0.05)


def new_key(gateway: Gateway, tenant_id: str, name: str) -> tuple[str, str]:
    """(key id, secret) of a new key of the tenant."""
    response = gateway.admin("POST", "/keys", json={"tenant_id": tenant_id, "name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["secret"]


def counters(requests: int, usage: Counter[str], errors: int = 0, rejected: int = 0) -> dict:
    return {
        "requests": requests,
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        "errors": errors,
        "rejected": rejected,
    }


def test_usage_is_what_clients_saw(gateway: Gateway) -> None:
    """Key `whole` asks for whole answers; key `streams` streams the same requests, with and
    without include_usage. The ledger must show the clients' usage, and the same tokens per
    request for a stream as for a whole answer."""
    tenant_id, _ = gateway.new_tenant(unique("ledger"), ACME_MODELS)
    whole_id, whole_secret = new_key(gateway, tenant_id, "whole")
    streams_id, streams_secret = new_key(gateway, tenant_id, "streams")
    seen: dict[tuple[str, str], Counter[str]] = {}
    for model in MODELS:
        for key_id in (whole_id, streams_id):
            seen[key_id, model] = Counter()
        for prompt in PROMPTS:
            whole = chat(gateway, whole_secret, model, prompt, stream=False, include_usage=False)
            assert whole.status_code == 200, whole.text
            usage = usage_seen(whole)
            assert usage is not None
            seen[whole_id, model].update(usage)
            stream = chat(gateway, streams_secret, model, prompt, stream=True, include_usage=True)
            assert stream.status_code == 200
            assert usage_seen(stream) == usage
            seen[streams_id, model].update(usage)
            bare = chat(gateway, streams_secret, model, prompt, stream=True, include_usage=False)
            assert bare.status_code == 200
            assert usage_seen(bare) is None  # the gateway's own usage chunk is not shown
            seen[streams_id, model].update(usage)  # same generation, so the same usage
    unknown = chat(gateway, whole_secret, "no-such-model", "hi", stream=False, include_usage=False)
    assert unknown.status_code == 404

    requests = 3 * len(MODELS) * len(PROMPTS) + 1
    report = report_when_counted(gateway, tenant_id, requests, group_by="key,model")
    rows = {(row["key_id"], row["model"]): row for row in report["rows"]}
    expected = {}
    for (key_id, model), tokens in seen.items():
        per_prompt = 1 if key_id == whole_id else 2
        row = counters(len(PROMPTS) * per_prompt, tokens)
        expected[key_id, model] = {"key_id": key_id, "model": model, **row}
    expected[whole_id, None] = {"key_id": whole_id, "model": None, **counters(1, Counter(), 0, 1)}
    assert rows == expected
    for model in MODELS:
        whole_tokens = rows[whole_id, model]["total_tokens"]
        assert whole_tokens > 0
        assert rows[streams_id, model]["total_tokens"] == 2 * whole_tokens
    assert report["totals"]["requests"] == requests


def test_upstream_failures_are_errors(gateway: Gateway, standin: ServerProcess) -> None:
    tenant_id, secret = gateway.new_tenant(unique("failing"), ACME_MODELS)
    set_faults(standin, fail_rate=1.0)
    for stream in (False, True):
        response = chat(gateway, secret, "base", "hello", stream=stream, include_usage=False)
        assert response.status_code >= 500
    report = report_when_counted(gateway, tenant_id, 2, group_by="model")
    assert report["rows"] == [{"model": "base", **counters(2, Counter(), errors=2)}]


@pytest.fixture(params=["sqlite", "redis"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Gateway settings for one shared store: a SQLite file, or Redis under a fresh prefix."""
    if request.param == "sqlite":
        yield {"store__sqlite_path": str(tmp_path / "shared.db")}
        return
    redis_url: str = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex}:"
    yield {
        "store__redis_url": redis_url,
        "store__redis_prefix": prefix,
        "auth__key_hash_secret": "ledger-test-secret-0123456789",
    }
    asyncio.run(delete_prefixed_keys(redis_url, prefix))


def test_counts_are_flushed_at_shutdown(
    standin: ServerProcess, tmp_path: Path, store_settings: dict[str, str]
) -> None:
    """With a flush interval of an hour, only the shutdown flush can have written the counts
    that a second gateway on the same store then reads."""
    settings = {**store_settings, "usage__flush_interval_s": "3600"}
    first = start_gateway(standin.url, tmp_path, tenant=unique("before"), **settings)
    try:
        for stream in (False, True):
            response = chat(first, first.api_key, "base", "hi", stream, include_usage=False)
            assert response.status_code == 200
    finally:
        first.stop()
    second = start_gateway(standin.url, tmp_path, tenant=unique("after"), **settings)
    try:
        report = usage_report(second, tenant_id=first.tenant_id, group_by="tenant")
    finally:
        second.stop()
    assert [(row["tenant_id"], row["requests"]) for row in report["rows"]] == [(first.tenant_id, 2)]
