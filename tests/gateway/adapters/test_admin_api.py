"""The adapter registry's admin API on a real gateway: CRUD with audit, validation, and the
ownership rules that keep one tenant's adapter out of another tenant's model map."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fixtures.gateway import Gateway


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register(gateway: Gateway, name: str, **fields: object) -> httpx.Response:
    body = {"name": name, "path": f"/srv/adapters/{name}", "base_model": "base", **fields}
    return gateway.admin("POST", "/adapters", json=body)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_register_list_get_update_delete_with_audit(gateway: Gateway) -> None:
    name = unique("ad")
    created = register(gateway, name, tenant_id=gateway.tenant_id, rank=8)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["path"] == f"/srv/adapters/{name}"
    assert (record["tenant_id"], record["rank"], record["base_model"]) == (
        gateway.tenant_id,
        8,
        "base",
    )
    listed = gateway.admin("GET", "/adapters", params={"tenant_id": gateway.tenant_id}).json()
    assert name in [item["name"] for item in listed["items"]]
    assert gateway.admin("GET", f"/adapters/{name}").json() == record

    patched = gateway.admin("PATCH", f"/adapters/{name}", json={"path": "/v2", "tenant_id": None})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["path"], patched.json()["tenant_id"]) == ("/v2", None)
    assert patched.json()["updated_at"] >= record["updated_at"]

    deleted = gateway.admin("DELETE", f"/adapters/{name}")
    assert deleted.json() == {"name": name, "deleted": True}
    assert error_of(gateway.admin("GET", f"/adapters/{name}"), 404)["code"] == "adapter_not_found"
    audit = gateway.admin("GET", "/audit", params={"target_id": name}).json()["items"]
    assert [(e["action"], e["target_type"]) for e in audit] == [
        ("adapter.delete", "adapter"),
        ("adapter.update", "adapter"),
        ("adapter.register", "adapter"),
    ]
    assert audit[1]["change"] == {"path": "/v2", "tenant_id": None}


def test_only_admins_see_or_set_adapters(gateway: Gateway) -> None:
    url = gateway.url + "/admin/v1/adapters"
    assert error_of(httpx.get(url), 401)
    assert error_of(httpx.post(url, json={"name": "x"}), 401)  # invalid body: still 401
    tenant_key = {"authorization": f"Bearer {gateway.api_key}"}
    body = {"name": unique("ad"), "path": "/etc", "base_model": "base"}
    assert error_of(httpx.post(url, json=body, headers=tenant_key), 401)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"name": "a/b"}, "name"),
        ({"path": "/srv/x\nrm"}, "path"),
        ({"path": ""}, "path"),
        ({"rank": 0}, "rank"),
        ({"base_model": None}, "base_model"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_registrations_name_the_field(
    gateway: Gateway, fields: dict[str, object], param: str
) -> None:
    body = {"name": unique("ad"), "path": "/srv/a", "base_model": "base", **fields}
    assert error_of(gateway.admin("POST", "/adapters", json=body), 400)["param"] == param


def test_names_are_unique_and_owners_must_exist(gateway: Gateway) -> None:
    name = unique("ad")
    assert register(gateway, name).status_code == 201
    assert error_of(register(gateway, name), 409)["param"] == "name"
    unknown = error_of(register(gateway, unique("ad"), tenant_id="tenant_nope"), 404)
    assert (unknown["code"], unknown["param"]) == ("tenant_not_found", "tenant_id")
    cleared = gateway.admin("PATCH", f"/adapters/{name}", json={"path": None})
    assert error_of(cleared, 400)["param"] == "path"


def test_an_adapter_a_tenant_maps_cannot_be_given_to_another(gateway: Gateway) -> None:
    adapter = unique("ad")
    owner_id, _ = gateway.new_tenant(
        unique("owner"), {"mine": {"base_model": "base", "adapter": adapter}}
    )
    refused = error_of(register(gateway, adapter, tenant_id=gateway.tenant_id), 409)
    assert (refused["code"], refused["param"]) == ("adapter_in_use", "tenant_id")
    wrong_base = error_of(register(gateway, adapter, base_model="other"), 409)
    assert wrong_base["param"] == "base_model"
    assert register(gateway, adapter, tenant_id=owner_id).status_code == 201
    moved = gateway.admin("PATCH", f"/adapters/{adapter}", json={"tenant_id": gateway.tenant_id})
    assert error_of(moved, 409)["code"] == "adapter_in_use"
    in_use = error_of(gateway.admin("DELETE", f"/adapters/{adapter}"), 409)
    assert in_use["code"] == "adapter_in_use"


def test_a_tenant_cannot_map_another_tenants_adapter(gateway: Gateway) -> None:
    adapter = unique("ad")
    assert register(gateway, adapter, tenant_id=gateway.tenant_id).status_code == 201
    models = {"stolen": {"base_model": "base", "adapter": adapter}}
    refused = gateway.admin("POST", "/tenants", json={"name": unique("thief"), "models": models})
    error = error_of(refused, 400)
    assert (error["code"], error["param"]) == ("adapter_not_owned", "models.stolen.adapter")
    thief_id, _ = gateway.new_tenant(unique("thief"), {})
    patched = gateway.admin("PATCH", f"/tenants/{thief_id}", json={"models": models})
    assert error_of(patched, 400)["code"] == "adapter_not_owned"
    wrong_base = {"mine": {"base_model": "other", "adapter": adapter}}
    mismatch = gateway.admin("PATCH", f"/tenants/{gateway.tenant_id}", json={"models": wrong_base})
    assert error_of(mismatch, 400)["code"] == "adapter_base_model_mismatch"
