"""Hostile input and paged lists through a real gateway process, on each store (SQLite and
Redis): every value the admin API accepts is storable, anything else is a 400 naming the
field, and every list answers a page at a time, in order and without gaps or repeats."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.admin.schemas import DEFAULT_PAGE, MAX_PAGE
from tests.fixtures.gateway import Gateway
from tests.gateway.admin.helpers import ok, unique

MAX_PAGES_READ = 50  # a list that never ends would otherwise hang the test
SIZE_RULE = {"name": "r", "direction": "input", "detector": "size_limits"}


def new_tenant(gw: Gateway, **fields: Any) -> dict[str, Any]:
    return ok(gw.admin("POST", "/tenants", json={"name": unique("tenant"), **fields}), 201)


def read_pages(
    gw: Gateway, path: str, limit: int, field: str = "items", **params: Any
) -> tuple[list[dict[str, Any]], list[int | None]]:
    """Every record of a paged list, `limit` at a time: (records, each page's next_offset)."""
    records: list[dict[str, Any]] = []
    next_offsets: list[int | None] = []
    offset: int | None = 0
    while offset is not None:
        assert len(next_offsets) < MAX_PAGES_READ, f"{path} does not end: {next_offsets}"
        page = ok(gw.admin("GET", path, params={**params, "offset": offset, "limit": limit}))
        assert len(page[field]) <= limit
        records += page[field]
        offset = page["next_offset"]
        next_offsets.append(offset)
    return records, next_offsets


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        (
            "PUT",
            "/safety/policies/huge-chars",
            {"rules": [{**SIZE_RULE, "max_prompt_chars": 18446744073709551616}]},
            "rules.0.max_prompt_chars",
        ),
        (
            "PUT",
            "/safety/policies/huge-messages",
            {"rules": [{**SIZE_RULE, "max_messages": 10**30}]},
            "rules.0.max_messages",
        ),
        ("PUT", "/safety/policies/nul", {"description": "a\x00b"}, "description"),
        (
            "PUT",
            "/safety/policies/nul-term",
            {"rules": [{"name": "r", "detector": "deny_terms", "terms": ["bad\x00word"]}]},
            "rules.0.terms.0",
        ),
        (
            "PUT",
            "/safety/policies/long-role",
            {"rules": [{"name": "r", "detector": "email", "roles": ["r" * 65]}]},
            "rules.0.roles.0",
        ),
        (
            "PUT",
            "/safety/policies/long-key",
            {"guard": {"model": "guard", "api_key": "k" * 5000}},
            "guard.api_key",
        ),
        ("POST", "/tenants", {"name": "nul", "metadata": {"team": "a\x00"}}, "metadata.team"),
        (
            "POST",
            "/adapters",
            {"name": "nul-owner", "path": "/p", "base_model": "base", "tenant_id": "t\x00"},
            "tenant_id",
        ),
        ("GET", "/tenants/" + "t" * 129, None, "tenant_id"),
        ("GET", "/keys?tenant_id=t%00", None, "tenant_id"),
        ("GET", "/audit?target_id=t%00", None, "target_id"),
        ("GET", "/audit?offset=10000000000", None, "offset"),
        ("GET", "/usage?key_id=k%00", None, "key_id"),
        ("GET", "/tenants?limit=1001", None, "limit"),
        ("GET", "/tenants?offset=-1", None, "offset"),
        ("GET", "/adapters?limit=0", None, "limit"),
        ("GET", "/safety/policies?limit=1001", None, "limit"),
        ("GET", "/usage?limit=1001", None, "limit"),
    ],
)
def test_hostile_input_is_400_naming_the_field_and_nothing_is_stored(
    store_gateway: Gateway, method: str, path: str, body: dict[str, Any] | None, param: str
) -> None:
    response = store_gateway.admin(method, path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    if method == "PUT":
        assert store_gateway.admin("GET", path).status_code == 404
    tenants = ok(store_gateway.admin("GET", "/tenants", params={"limit": MAX_PAGE}))["items"]
    assert "nul" not in {tenant["name"] for tenant in tenants}


def test_tenants_are_listed_a_page_at_a_time(store_gateway: Gateway) -> None:
    created = [new_tenant(store_gateway)["id"] for _ in range(DEFAULT_PAGE + 5)]
    first = ok(store_gateway.admin("GET", "/tenants"))
    assert len(first["items"]) == DEFAULT_PAGE
    assert first["next_offset"] == DEFAULT_PAGE

    tenants, next_offsets = read_pages(store_gateway, "/tenants", limit=40)
    ids = [tenant["id"] for tenant in tenants]
    assert len(ids) == len(set(ids))
    assert ids[-len(created) :] == created  # creation order
    assert next_offsets == [*range(40, len(ids), 40), None]
    past_the_end = ok(store_gateway.admin("GET", "/tenants", params={"offset": len(ids)}))
    assert past_the_end == {"items": [], "next_offset": None}


def test_the_audit_log_is_read_a_page_at_a_time(store_gateway: Gateway) -> None:
    tenant = new_tenant(store_gateway)
    for requests_per_minute in range(1, 6):
        limits = {"requests_per_minute": requests_per_minute}
        ok(store_gateway.admin("PATCH", f"/tenants/{tenant['id']}", json={"limits": limits}))

    updates, next_offsets = read_pages(
        store_gateway, "/audit", limit=2, target_id=tenant["id"], action="tenant.update"
    )
    changes = [entry["change"]["limits"]["requests_per_minute"] for entry in updates]
    assert changes == [5, 4, 3, 2, 1]  # newest first
    assert next_offsets == [2, 4, None]
    everything, next_offsets = read_pages(store_gateway, "/audit", limit=4, target_id=tenant["id"])
    assert [entry["action"] for entry in everything] == ["tenant.update"] * 5 + ["tenant.create"]
    assert next_offsets == [4, None]


def test_adapters_are_listed_a_page_at_a_time(store_gateway: Gateway) -> None:
    owner = new_tenant(store_gateway)
    names = sorted(unique("adapter") for _ in range(7))
    for name in names:
        adapter = {"name": name, "path": f"/srv/{name}", "base_model": "base"}
        ok(
            store_gateway.admin("POST", "/adapters", json={**adapter, "tenant_id": owner["id"]}),
            201,
        )

    adapters, next_offsets = read_pages(store_gateway, "/adapters", limit=3, tenant_id=owner["id"])
    assert [adapter["name"] for adapter in adapters] == names
    assert next_offsets == [3, 6, None]


def test_safety_policies_are_listed_a_page_at_a_time(store_gateway: Gateway) -> None:
    prefix = unique("policy")
    names = [f"{prefix}-{index}" for index in range(5)]
    for name in names:
        ok(store_gateway.admin("PUT", f"/safety/policies/{name}", json={}), 201)

    policies, next_offsets = read_pages(store_gateway, "/safety/policies", limit=2)
    listed = [policy["name"] for policy in policies]
    assert [name for name in listed if name.startswith(prefix)] == names
    assert len(listed) == len(set(listed))
    assert next_offsets == [*range(2, len(listed), 2), None]


def test_usage_rows_are_read_a_page_at_a_time_and_csv_has_them_all(store_gateway: Gateway) -> None:
    for model in ("base", "tenant-a", "tenant-b"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        chat = httpx.post(
            store_gateway.url + "/v1/chat/completions", json=body, headers=store_gateway.headers
        )
        assert chat.status_code == 200, chat.text

    query = {"tenant_id": store_gateway.tenant_id, "group_by": "model"}
    rows, next_offsets = read_pages(store_gateway, "/usage", limit=2, field="rows", **query)
    assert [row["model"] for row in rows] == ["base", "tenant-a", "tenant-b"]
    assert next_offsets == [2, None]
    report = ok(store_gateway.admin("GET", "/usage", params={**query, "limit": 1}))
    assert report["totals"]["requests"] == 3  # of every row, not of the page's one

    csv = store_gateway.admin("GET", "/usage", params={**query, "format": "csv"}).text.splitlines()
    assert [line.split(",")[0] for line in csv] == ["model", "base", "tenant-a", "tenant-b"]
    paged = {**query, "format": "csv", "offset": 1, "limit": 1}
    csv = store_gateway.admin("GET", "/usage", params=paged).text.splitlines()
    assert [line.split(",")[0] for line in csv] == ["model", "tenant-a"]
