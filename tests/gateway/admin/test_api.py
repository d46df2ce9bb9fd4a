"""The admin API through a real gateway process: admin auth, tenants and keys, errors, audit.

Whether a key works is checked where it matters, on the gateway's own `/v1/models`, so these
tests see revocation, rotation, expiry and tenant changes the way clients do.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.tenancy.admin_keys import admin_key_id
from tests.fixtures.gateway import ADMIN_KEY, Gateway, start_gateway
from tests.fixtures.processes import PYTHON, ServerProcess, free_port, running_server
from tests.gateway.admin.helpers import ok, unique

OTHER_ADMIN_KEY = "second-admin-key-9876543210"
SUPPORT_MODELS = {
    "chat": {"base_model": "base"},
    "support": {"base_model": "base", "adapter": "tenant-a"},
}
HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
KEY_BODY = {"tenant_id": "{tenant}", "name": "k"}


@pytest.fixture(scope="module")
def gw(standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with two admin keys."""
    admin_keys = json.dumps([ADMIN_KEY, OTHER_ADMIN_KEY])
    gateway = start_gateway(standin.url, tmp_path_factory.mktemp("admin"), admin__keys=admin_keys)
    yield gateway
    gateway.stop()


def new_tenant(gw: Gateway, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("tenant"), "models": SUPPORT_MODELS, **fields}
    return ok(gw.admin("POST", "/tenants", json=body), 201)


def new_key(gw: Gateway, tenant_id: str, **fields: Any) -> dict[str, Any]:
    body = {"tenant_id": tenant_id, "name": unique("key"), **fields}
    return ok(gw.admin("POST", "/keys", json=body), 201)


def models_seen_by(gw: Gateway, secret: str) -> list[str] | None:
    """The model names `secret` may call, or None when the gateway rejects it (401)."""
    response = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {secret}"})
    if response.status_code == 401:
        return None
    return [card["id"] for card in ok(response)["data"]]


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    return error


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-admin-key", f"Basic {ADMIN_KEY}", f"Bearer {ADMIN_KEY}x", "Bearer"],
)
def test_admin_calls_need_a_configured_admin_key(gw: Gateway, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    response = httpx.get(gw.url + "/admin/v1/tenants", headers=headers)
    assert_openai_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_api_key_is_not_an_admin_key(gw: Gateway) -> None:
    response = httpx.post(
        gw.url + "/admin/v1/tenants", json={"name": unique("x")}, headers=gw.headers
    )
    assert_openai_error(response, 401)


def test_invalid_requests_without_an_admin_key_are_401_not_400(gw: Gateway) -> None:
    headers = {"content-type": "application/json"}
    bad_json = httpx.post(gw.url + "/admin/v1/tenants", content=b"{not json", headers=headers)
    assert_openai_error(bad_json, 401)
    bad_query = httpx.get(gw.url + "/admin/v1/keys", params={"limit": 0})
    assert_openai_error(bad_query, 401)


def test_every_configured_admin_key_is_accepted(gw: Gateway) -> None:
    for admin_key in (ADMIN_KEY, OTHER_ADMIN_KEY):
        headers = {"authorization": f"Bearer {admin_key}"}
        assert "items" in ok(httpx.get(gw.url + "/admin/v1/tenants", headers=headers))


def test_the_admin_api_is_closed_without_admin_keys(standin: ServerProcess, tmp_path: Path) -> None:
    port = free_port()
    argv = [PYTHON, "-m", "gateway.cli", "serve", "--port", str(port), "--upstream", standin.url]
    env = {
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(tmp_path / "gateway.db"),
        "VLLM_GATEWAY_ADMIN__KEYS": "[]",
    }
    with running_server(argv, port, tmp_path / "gateway.log", "/healthz", env) as server:
        for headers in ({}, {"authorization": f"Bearer {ADMIN_KEY}"}):
            response = httpx.post(
                server.url + "/admin/v1/tenants", json={"name": "acme"}, headers=headers
            )
            error = assert_openai_error(response, 401)
            assert "not configured" in error["message"]


def test_openapi_and_docs_are_served_under_the_prefix(gw: Gateway) -> None:
    schema = ok(httpx.get(gw.url + "/admin/v1/openapi.json"))
    assert "/admin/v1/tenants" in schema["paths"]
    assert "/admin/v1/keys/{key_id}/rotate" in schema["paths"]
    assert httpx.get(gw.url + "/admin/v1/docs").status_code == 200


def test_tenant_lifecycle(gw: Gateway) -> None:
    name = unique("lifecycle")
    created = new_tenant(
        gw,
        name=name,
        default_model="chat",
        limits={"requests_per_minute": 60, "max_concurrent": 4},
        safety_policy="strict",
        metadata={"team": "ml"},
    )
    assert created["id"].startswith("tenant_")
    assert created["name"] == name
    assert created["enabled"] is True
    assert created["models"]["support"] == {"base_model": "base", "adapter": "tenant-a"}
    assert created["limits"]["requests_per_minute"] == 60
    assert created["limits"]["tokens_per_day"] is None
    tenant_path = f"/tenants/{created['id']}"
    assert ok(gw.admin("GET", tenant_path)) == created
    listed = ok(gw.admin("GET", "/tenants"))["items"]
    assert created in listed

    patch = {"name": unique("renamed"), "limits": {"tokens_per_day": 1000, "max_concurrent": None}}
    updated = ok(gw.admin("PATCH", tenant_path, json=patch))
    assert updated["name"] == patch["name"]
    assert updated["limits"]["requests_per_minute"] == 60  # limits not given are kept
    assert updated["limits"]["tokens_per_day"] == 1000
    assert updated["limits"]["max_concurrent"] is None
    assert updated["metadata"] == {"team": "ml"}
    assert updated["updated_at"] >= created["updated_at"]
    assert ok(gw.admin("GET", tenant_path)) == updated


def test_disabling_a_tenant_stops_its_keys_until_enabled(gw: Gateway) -> None:
    tenant = new_tenant(gw)
    secret = new_key(gw, tenant["id"])["secret"]
    assert models_seen_by(gw, secret) == ["chat", "support"]
    disabled = ok(gw.admin("POST", f"/tenants/{tenant['id']}/disable"))
    assert disabled["enabled"] is False
    assert models_seen_by(gw, secret) is None
    enabled = ok(gw.admin("POST", f"/tenants/{tenant['id']}/enable"))
    assert enabled["enabled"] is True
    assert models_seen_by(gw, secret) == ["chat", "support"]


def test_changing_tenant_models_changes_what_its_keys_see(gw: Gateway) -> None:
    tenant = new_tenant(gw)
    secret = new_key(gw, tenant["id"])["secret"]
    models = {"only": {"base_model": "base"}}
    ok(gw.admin("PATCH", f"/tenants/{tenant['id']}", json={"models": models}))
    assert models_seen_by(gw, secret) == ["only"]


def test_tenant_names_are_unique(gw: Gateway) -> None:
    first = new_tenant(gw)
    again = gw.admin("POST", "/tenants", json={"name": first["name"]})
    assert_openai_error(again, 409, "name")
    second = new_tenant(gw)
    rename = gw.admin("PATCH", f"/tenants/{second['id']}", json={"name": first["name"]})
    assert_openai_error(rename, 409, "name")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/tenants/tenant_missing"),
        ("PATCH", "/tenants/tenant_missing"),
        ("POST", "/tenants/tenant_missing/disable"),
        ("POST", "/tenants/tenant_missing/enable"),
        ("DELETE", "/tenants/tenant_missing"),
        ("GET", "/keys/key_missing"),
        ("PATCH", "/keys/key_missing"),
        ("POST", "/keys/key_missing/revoke"),
        ("POST", "/keys/key_missing/rotate"),
        ("GET", "/no-such-route"),
    ],
)
def test_unknown_ids_are_404(gw: Gateway, method: str, path: str) -> None:
    body = {} if method == "PATCH" else None
    assert_openai_error(gw.admin(method, path, json=body), 404)


def test_a_key_for_an_unknown_tenant_is_404(gw: Gateway) -> None:
    response = gw.admin("POST", "/keys", json={"tenant_id": "tenant_missing", "name": "k"})
    assert_openai_error(response, 404, "tenant_id")


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/tenants", {"name": ""}, "name"),
        ("POST", "/tenants", {"name": "has space"}, "name"),
        ("POST", "/tenants", {"name": "x" * 65}, "name"),
        ("POST", "/tenants", {}, "name"),
        ("POST", "/tenants", {"name": "ok", "colour": "red"}, "colour"),
        (
            "POST",
            "/tenants",
            {"name": "ok", "limits": {"tokens_per_day": -1}},
            "limits.tokens_per_day",
        ),
        (
            "POST",
            "/tenants",
            {"name": "ok", "limits": {"max_concurrent": 1.5}},
            "limits.max_concurrent",
        ),
        (
            "POST",
            "/tenants",
            {"name": "ok", "models": {"m": {"adapter": "a"}}},
            "models.m.base_model",
        ),
        ("POST", "/tenants", {"name": "ok", "default_model": "chat"}, "default_model"),
        ("POST", "/tenants", {"name": "ok", "metadata": {"k": 1}}, "metadata.k"),
        ("PATCH", "/tenants/{tenant}", {"name": None}, "name"),
        ("PATCH", "/tenants/{tenant}", {"enabled": "maybe"}, "enabled"),
        ("PATCH", "/tenants/{tenant}", {"default_model": "nope"}, "default_model"),
        ("POST", "/keys", {"tenant_id": "{tenant}"}, "name"),
        ("POST", "/keys", {**KEY_BODY, "allowed_models": ["nope"]}, "allowed_models"),
        ("POST", "/keys", {**KEY_BODY, "expires_at": 1.0}, "expires_at"),
        ("POST", "/keys", {**KEY_BODY, "expires_in_s": 0}, "expires_in_s"),
        (
            "POST",
            "/keys",
            {**KEY_BODY, "expires_at": 4e9, "expires_in_s": 60},
            "expires_in_s",
        ),
        ("PATCH", "/keys/{key}", {"allowed_models": ["nope"]}, "allowed_models"),
        ("PATCH", "/keys/{key}", {"limits": None}, "limits"),
        ("POST", "/keys/{key}/rotate", {"grace_period_s": -1}, "grace_period_s"),
        ("GET", "/keys?limit=0", None, "limit"),
        ("GET", "/keys?offset=-1", None, "offset"),
        ("GET", "/audit?since=yesterday", None, "since"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(
    gw: Gateway, method: str, path: str, body: dict[str, Any] | None, param: str
) -> None:
    tenant = new_tenant(gw)
    key = new_key(gw, tenant["id"])
    ids = {"tenant": tenant["id"], "key": key["id"]}
    if body is not None:
        body = {
            name: value.format(**ids) if isinstance(value, str) else value
            for name, value in body.items()
        }
    response = gw.admin(method, path.format(**ids), json=body)
    error = assert_openai_error(response, 400, param)
    assert error["type"] == "invalid_request_error"


def test_a_body_that_is_not_json_is_400(gw: Gateway) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    response = httpx.post(gw.url + "/admin/v1/tenants", content=b"{not json", headers=headers)
    assert_openai_error(response, 400)


def test_a_new_key_shows_its_secret_once_and_never_a_hash(gw: Gateway) -> None:
    tenant = new_tenant(gw)
    created = new_key(gw, tenant["id"], expires_in_s=3600, metadata={"owner": "bob"})
    secret = created["secret"]
    assert secret.startswith("sk-")
    assert created["prefix"] == secret[:8]
    assert created["id"].startswith("key_")
    assert created["status"] == "active"
    assert time.time() < created["expires_at"] <= time.time() + 3600
    assert models_seen_by(gw, secret) == ["chat", "support"]

    views = [
        gw.admin("GET", f"/keys/{created['id']}"),
        gw.admin("GET", "/keys", params={"tenant_id": tenant["id"]}),
        gw.admin("PATCH", f"/keys/{created['id']}", json={"name": unique("renamed")}),
        gw.admin("GET", "/audit", params={"target_id": created["id"]}),
    ]
    for view in views:
        text = ok(view) and view.text
        assert secret not in text
        assert "hash" not in text
        assert HEX_DIGEST.search(text) is None
    assert HEX_DIGEST.search(json.dumps(created)) is None
    assert not any("hash" in field for field in created)


def test_updating_a_key(gw: Gateway) -> None:
    tenant = new_tenant(gw)
    key = new_key(gw, tenant["id"], limits={"requests_per_minute": 5})
    assert models_seen_by(gw, key["secret"]) == ["chat", "support"]
    patch = {
        "allowed_models": ["support"],
        "limits": {"tokens_per_minute": 100},
        "metadata": {"a": "b"},
    }
    updated = ok(gw.admin("PATCH", f"/keys/{key['id']}", json=patch))
    assert updated["allowed_models"] == ["support"]
    assert updated["limits"]["requests_per_minute"] == 5
    assert updated["limits"]["tokens_per_minute"] == 100
    assert updated["metadata"] == {"a": "b"}
    assert models_seen_by(gw, key["secret"]) == ["support"]

    every_model = ok(gw.admin("PATCH", f"/keys/{key['id']}", json={"allowed_models": None}))
    assert every_model["allowed_models"] is None
    assert models_seen_by(gw, key["secret"]) == ["chat", "support"]

    expired = ok(gw.admin("PATCH", f"/keys/{key['id']}", json={"expires_at": time.time() - 1}))
    assert expired["status"] == "expired"
    assert models_seen_by(gw, key["secret"]) is None


def test_rotating_without_grace_retires_the_old_secret_at_once(gw: Gateway) -> None:
    key = new_key(gw, new_tenant(gw)["id"])
    assert models_seen_by(gw, key["secret"]) == ["chat", "support"]  # now in the key cache
    rotated = ok(gw.admin("POST", f"/keys/{key['id']}/rotate"))
    assert rotated["id"] == key["id"]
    assert rotated["secret"] != key["secret"]
    assert rotated["prefix"] == rotated["secret"][:8]
    assert rotated["grace_until"] is None
    assert models_seen_by(gw, key["secret"]) is None
    assert models_seen_by(gw, rotated["secret"]) == ["chat", "support"]


def test_rotating_with_grace_keeps_the_old_secret_working(gw: Gateway) -> None:
    key = new_key(gw, new_tenant(gw)["id"])
    before = time.time()
    rotated = ok(gw.admin("POST", f"/keys/{key['id']}/rotate", json={"grace_period_s": 3600}))
    assert before + 3600 <= rotated["grace_until"] <= time.time() + 3600
    assert models_seen_by(gw, key["secret"]) == ["chat", "support"]
    assert models_seen_by(gw, rotated["secret"]) == ["chat", "support"]

    again = ok(gw.admin("POST", f"/keys/{key['id']}/rotate", json={"grace_period_s": 0}))
    assert models_seen_by(gw, key["secret"]) is None
    assert models_seen_by(gw, rotated["secret"]) is None
    assert models_seen_by(gw, again["secret"]) == ["chat", "support"]


def test_revoking_a_key(gw: Gateway) -> None:
    key = new_key(gw, new_tenant(gw)["id"])
    assert models_seen_by(gw, key["secret"]) == ["chat", "support"]
    revoked = ok(gw.admin("POST", f"/keys/{key['id']}/revoke"))
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"] is not None
    assert models_seen_by(gw, key["secret"]) is None
    again = ok(gw.admin("POST", f"/keys/{key['id']}/revoke"))
    assert again["revoked_at"] == revoked["revoked_at"]
    assert_openai_error(gw.admin("POST", f"/keys/{key['id']}/rotate"), 409)


def test_deleting_a_tenant_revokes_its_keys(gw: Gateway) -> None:
    tenant = new_tenant(gw)
    keys = [new_key(gw, tenant["id"]) for _ in range(2)]
    assert all(models_seen_by(gw, key["secret"]) for key in keys)
    assert ok(gw.admin("DELETE", f"/tenants/{tenant['id']}")) == {
        "id": tenant["id"],
        "deleted": True,
    }
    assert_openai_error(gw.admin("GET", f"/tenants/{tenant['id']}"), 404)
    assert_openai_error(gw.admin("DELETE", f"/tenants/{tenant['id']}"), 404)
    for key in keys:
        assert ok(gw.admin("GET", f"/keys/{key['id']}"))["status"] == "revoked"
        assert models_seen_by(gw, key["secret"]) is None


def test_keys_are_listed_a_page_at_a_time(gw: Gateway) -> None:
    tenant = new_tenant(gw)
    other = new_tenant(gw)
    created = [new_key(gw, tenant["id"])["id"] for _ in range(5)]
    new_key(gw, other["id"])
    seen: list[str] = []
    offsets: list[int | None] = []
    offset: int | None = 0
    while offset is not None:
        params = {"tenant_id": tenant["id"], "offset": offset, "limit": 2}
        page = ok(gw.admin("GET", "/keys", params=params))
        seen += [key["id"] for key in page["items"]]
        offset = page["next_offset"]
        offsets.append(offset)
    assert seen == created
    assert offsets == [2, 4, None]
    everyone = ok(gw.admin("GET", "/keys", params={"limit": 1000}))["items"]
    assert {key["tenant_id"] for key in everyone} >= {tenant["id"], other["id"]}


def test_every_change_is_audited_without_secrets(gw: Gateway) -> None:
    start = time.time()
    tenant = new_tenant(gw)
    tenant_path = f"/tenants/{tenant['id']}"
    ok(gw.admin("PATCH", tenant_path, json={"limits": {"tokens_per_day": 5}}))
    other_admin = {"authorization": f"Bearer {OTHER_ADMIN_KEY}"}
    ok(httpx.post(f"{gw.url}/admin/v1{tenant_path}/disable", headers=other_admin))
    key = new_key(gw, tenant["id"])
    rotated = ok(gw.admin("POST", f"/keys/{key['id']}/rotate", json={"grace_period_s": 60}))
    ok(gw.admin("POST", f"/keys/{key['id']}/revoke"))

    tenant_entries = ok(gw.admin("GET", "/audit", params={"target_id": tenant["id"]}))["items"]
    assert [e["action"] for e in tenant_entries] == [
        "tenant.disable",
        "tenant.update",
        "tenant.create",
    ]
    assert [e["admin_key_id"] for e in tenant_entries] == [
        admin_key_id(OTHER_ADMIN_KEY),
        admin_key_id(ADMIN_KEY),
        admin_key_id(ADMIN_KEY),
    ]
    assert tenant_entries[0]["change"] == {"enabled": False}
    assert tenant_entries[1]["change"] == {"limits": {"tokens_per_day": 5}}
    assert tenant_entries[2]["change"]["name"] == tenant["name"]

    key_entries = ok(gw.admin("GET", "/audit", params={"target_id": key["id"]}))["items"]
    assert [e["action"] for e in key_entries] == ["key.revoke", "key.rotate", "key.create"]
    assert all(e["target_type"] == "key" for e in key_entries)
    assert key_entries[1]["change"]["prefix"] == rotated["prefix"]
    text = json.dumps(key_entries)
    for secret in (key["secret"], rotated["secret"]):
        assert secret not in text
    assert "hash" not in text
    assert HEX_DIGEST.search(text) is None
    assert ADMIN_KEY not in json.dumps(tenant_entries)

    params = {"action": "key.rotate", "since": start}
    rotations = ok(gw.admin("GET", "/audit", params=params))["items"]
    assert rotations and all(e["action"] == "key.rotate" for e in rotations)
    assert key["id"] in {e["target_id"] for e in rotations}
    newest = ok(gw.admin("GET", "/audit", params={"limit": 1}))["items"]
    assert len(newest) == 1
    after_all = ok(gw.admin("GET", "/audit", params={"since": time.time() + 10}))["items"]
    assert after_all == []
