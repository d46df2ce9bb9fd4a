"""API keys on the hot path, over real HTTP: who gets in, what they see, and how fast a
revocation reaches every gateway instance."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis import delete_prefixed_keys

MESSAGES = [{"role": "user", "content": "hello"}]


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def chat(gateway: Gateway, key: str | None, model: str | None = "base") -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    body: dict[str, object] = {"messages": MESSAGES, "max_tokens": 4}
    if model is not None:
        body["model"] = model
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers)


def new_key(gateway: Gateway, tenant_id: str, **fields: object) -> tuple[str, str]:
    created = gateway.admin("POST", "/keys", json={"tenant_id": tenant_id, "name": "k", **fields})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["secret"]


def rejected_message(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    return error["message"]


def wait_for_status(gateway: Gateway, key: str, status: int, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while chat(gateway, key).status_code != status:
        assert time.monotonic() - started < timeout, f"still not {status} after {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_missing_or_malformed_authorization_is_401(gateway: Gateway) -> None:
    assert rejected_message(chat(gateway, None)).startswith("Missing API key")
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "base", "messages": MESSAGES},
        headers={"authorization": "Basic abc"},
    )
    assert response.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-not-a-key").chat.completions.create(model="base", messages=MESSAGES)


def test_every_rejected_key_gets_the_same_answer(gateway: Gateway) -> None:
    """Unknown, revoked, expired and disabled-tenant keys must be indistinguishable."""
    unknown = rejected_message(chat(gateway, "sk-" + "x" * 43))
    tenant_id, _ = gateway.new_tenant(f"t-{uuid.uuid4().hex[:8]}", {"base": {"base_model": "base"}})
    revoked_id, revoked = new_key(gateway, tenant_id)
    gateway.admin("POST", f"/keys/{revoked_id}/revoke").raise_for_status()
    _, expired = new_key(gateway, tenant_id, expires_at=time.time() + 1)
    _, disabled = new_key(gateway, tenant_id)
    time.sleep(1.1)
    assert rejected_message(chat(gateway, revoked)) == unknown
    assert rejected_message(chat(gateway, expired)) == unknown
    assert chat(gateway, disabled).status_code == 200
    gateway.admin("POST", f"/tenants/{tenant_id}/disable").raise_for_status()
    wait_for_status(gateway, disabled, 401)
    assert rejected_message(chat(gateway, disabled)) == unknown
    assert revoked not in unknown and disabled not in unknown


def test_models_of_other_tenants_are_not_found(gateway: Gateway) -> None:
    _, other_key = gateway.new_tenant(
        f"other-{uuid.uuid4().hex[:8]}", {"support": {"base_model": "base", "adapter": "tenant-b"}}
    )
    client = sdk(gateway, other_key)
    for foreign in ("tenant-a", "base", "tenant-b"):  # acme's names and raw upstream names
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=foreign, messages=MESSAGES)
        assert caught.value.body["code"] == "model_not_found"
    assert [m.id for m in client.models.list()] == ["support"]
    answer = client.chat.completions.create(model="support", messages=MESSAGES, max_tokens=4)
    assert answer.model == "support"  # the upstream's adapter name is rewritten back


def test_public_names_route_to_their_adapter(gateway: Gateway, standin: ServerProcess) -> None:
    _, key = gateway.new_tenant(
        f"alias-{uuid.uuid4().hex[:8]}",
        {"support": {"base_model": "base", "adapter": "tenant-a"}},
    )
    body = {"messages": MESSAGES, "max_tokens": 6}
    direct = httpx.post(
        standin.url + "/v1/chat/completions", json={**body, "model": "tenant-a"}
    ).json()
    via = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**body, "model": "support", "stream": True},
        headers={"authorization": f"Bearer {key}"},
    )
    assert b'"model":"support"' in via.content and b"tenant-a" not in via.content
    streamed = "".join(
        chunk["choices"][0]["delta"].get("content", "")
        for chunk in (
            orjson.loads(event[6:])
            for event in via.content.split(b"\n\n")
            if event.startswith(b"data: {")
        )
        if chunk["choices"]
    )
    assert streamed == direct["choices"][0]["message"]["content"]


def test_default_model_and_allowed_subset(gateway: Gateway) -> None:
    patched = gateway.admin(
        "PATCH", f"/tenants/{gateway.tenant_id}", json={"default_model": "base"}
    )
    assert patched.status_code == 200, patched.text
    time.sleep(1.1)
    assert chat(gateway, gateway.api_key, model=None).json()["model"] == "base"
    _, narrow = new_key(gateway, gateway.tenant_id, allowed_models=["tenant-a"])
    assert [m.id for m in sdk(gateway, narrow).models.list()] == ["tenant-a"]
    assert chat(gateway, narrow, model="tenant-b").status_code == 404
    assert chat(gateway, narrow, model="tenant-a").status_code == 200


def test_rotation_keeps_the_old_secret_for_the_grace_period(gateway: Gateway) -> None:
    key_id, old = new_key(gateway, gateway.tenant_id)
    rotated = gateway.admin("POST", f"/keys/{key_id}/rotate", json={"grace_period_s": 2})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    assert chat(gateway, new).status_code == 200
    assert chat(gateway, old).status_code == 200
    wait_for_status(gateway, old, 401, timeout=5)
    assert chat(gateway, new).status_code == 200


@pytest.fixture
def two_gateways_on_redis(
    standin: ServerProcess, redis_url: str, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    prefix = f"test-{uuid.uuid4().hex}:"
    shared = {
        "store__redis_url": redis_url,
        "store__redis_prefix": prefix,
        "auth__key_hash_secret": "a-shared-secret-for-all-instances",
        "auth__key_cache_ttl_s": "60",  # only the invalidation can make B forget in time
    }
    first = start_gateway(standin.url, tmp_path, **shared)
    try:
        second = start_gateway(standin.url, tmp_path, tenant="acme-2", **shared)
    except Exception:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()
    asyncio.run(delete_prefixed_keys(redis_url, prefix))


def test_revocation_reaches_every_instance_within_a_second(
    two_gateways_on_redis: tuple[Gateway, Gateway],
) -> None:
    first, second = two_gateways_on_redis
    key_id, key = new_key(first, first.tenant_id)
    assert chat(second, key).status_code == 200  # now cached on the second instance
    first.admin("POST", f"/keys/{key_id}/revoke").raise_for_status()
    elapsed = wait_for_status(second, key, 401, timeout=3)
    print(f"revocation visible on the second instance after {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0
    assert chat(first, key).status_code == 401
