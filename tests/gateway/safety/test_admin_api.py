"""Safety policies through the admin API of a real gateway: create, replace, read, delete,
validation errors in the OpenAI format, admin authentication and the audit trail."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.tenancy.admin_keys import admin_key_id
from tests.fixtures.gateway import ADMIN_KEY, Gateway

PII = {
    "description": "mask PII on the way in, redact it on the way out",
    "rules": [
        {"name": "mask-mail", "detector": "email", "direction": "input", "action": "mask"},
        {"name": "cards", "detector": "payment_card", "direction": "both", "action": "redact"},
        {"name": "words", "detector": "deny_terms", "terms": ["forbidden fruit"]},
    ],
}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_create_replace_read_and_delete(gateway: Gateway) -> None:
    created = ok(gateway.admin("PUT", "/safety/policies/pii-crud", json=PII), 201)
    assert created["name"] == "pii-crud"
    assert [rule["name"] for rule in created["policy"]["rules"]] == ["mask-mail", "cards", "words"]
    assert created["policy"]["rules"][2]["action"] == "block"  # the default

    replaced = ok(gateway.admin("PUT", "/safety/policies/pii-crud", json={"rules": []}))
    assert replaced["policy"]["rules"] == []
    assert replaced["updated_at"] >= created["updated_at"]
    assert ok(gateway.admin("GET", "/safety/policies/pii-crud"))["policy"]["rules"] == []
    names = [item["name"] for item in ok(gateway.admin("GET", "/safety/policies"))["items"]]
    assert "pii-crud" in names

    assert ok(gateway.admin("DELETE", "/safety/policies/pii-crud")) == {
        "name": "pii-crud",
        "deleted": True,
    }
    assert (
        error(gateway.admin("GET", "/safety/policies/pii-crud"), 404)["code"]
        == "safety_policy_not_found"
    )
    assert (
        error(gateway.admin("DELETE", "/safety/policies/pii-crud"), 404)["code"]
        == "safety_policy_not_found"
    )


def test_invalid_policies_are_400_naming_the_field(gateway: Gateway) -> None:
    unknown_detector = {"rules": [{"name": "r", "detector": "horoscope"}]}
    assert (
        error(gateway.admin("PUT", "/safety/policies/bad", json=unknown_detector), 400)["param"]
        == "rules.0.detector"
    )
    masked_output = {
        "rules": [{"name": "r", "detector": "email", "direction": "output", "action": "mask"}]
    }
    assert (
        "mask works on the input"
        in error(gateway.admin("PUT", "/safety/policies/bad", json=masked_output), 400)["message"]
    )
    broken_regex = {"rules": [{"name": "r", "detector": "deny_regex", "patterns": ["(unclosed"]}]}
    assert (
        "invalid regex"
        in error(gateway.admin("PUT", "/safety/policies/bad", json=broken_regex), 400)["message"]
    )
    no_text = {"rules": [], "guard": {"model": "g", "prompt_template": "no placeholder"}}
    assert (
        error(gateway.admin("PUT", "/safety/policies/bad", json=no_text), 400)["param"]
        == "guard.prompt_template"
    )
    assert (
        error(gateway.admin("PUT", "/safety/policies/none", json={"rules": []}), 400)["param"]
        == "name"
    )
    assert (
        error(gateway.admin("PUT", "/safety/policies/-bad-name", json={"rules": []}), 400)["param"]
        == "name"
    )
    assert error(gateway.admin("GET", "/safety/policies/bad"), 404)


def test_admin_keys_are_required(gateway: Gateway) -> None:
    anonymous = httpx.get(gateway.url + "/admin/v1/safety/policies")
    assert error(anonymous, 401)["code"] == "invalid_api_key"
    wrong = httpx.put(
        gateway.url + "/admin/v1/safety/policies/x",
        json={"rules": []},
        headers={"authorization": "Bearer nope"},
    )
    assert error(wrong, 401)["code"] == "invalid_api_key"


def test_changes_are_audited_with_the_admin_key(gateway: Gateway) -> None:
    ok(gateway.admin("PUT", "/safety/policies/audited", json=PII), 201)
    ok(gateway.admin("DELETE", "/safety/policies/audited"))
    entries = ok(gateway.admin("GET", "/audit", params={"target_id": "audited"}))["items"]
    assert [entry["action"] for entry in entries] == ["safety_policy.delete", "safety_policy.put"]
    assert {entry["admin_key_id"] for entry in entries} == {admin_key_id(ADMIN_KEY)}
    assert entries[1]["target_type"] == "safety_policy"
    assert entries[1]["change"]["rules"][0]["detector"] == "email"


def test_regexes_re2_cannot_run_or_hold_are_400_naming_the_pattern(gateway: Gateway) -> None:
    def refused(policy: dict[str, Any]) -> dict[str, Any]:
        return error(gateway.admin("PUT", "/safety/policies/re2", json=policy), 400)

    def patterns(*patterns: str) -> dict[str, Any]:
        rules = [
            {"name": "mail", "detector": "email"},
            {"name": "words", "detector": "deny_regex", "patterns": list(patterns)},
        ]
        return {"rules": rules}

    lookbehind = refused(patterns("fine", r"(?<!\w)secret"))
    assert lookbehind["param"] == "rules.1.patterns.1"
    assert "(?<!" in lookbehind["message"] and "lookarounds" in lookbehind["message"]
    backreference = refused({"guard": {"model": "g", "unsafe_pattern": r"(unsafe)\s+\1"}})
    assert backreference["param"] == "guard.unsafe_pattern"
    assert "backreferences" in backreference["message"]
    # Python compiles this in no time; RE2 would expand it to some 800,000 instructions.
    giant = refused(patterns("".join(f"[^{char}]{{1,999}}" for char in "abcdefghij" * 9)))
    assert giant["param"] == "rules.1.patterns.0"
    assert "memory cap" in giant["message"]
    assert refused(patterns("a" * 1001))["param"] == "rules.1.patterns.0"
    assert refused(patterns(*["a"] * 257))["param"] == "rules.1.patterns"
    assert error(gateway.admin("GET", "/safety/policies/re2"), 404)
