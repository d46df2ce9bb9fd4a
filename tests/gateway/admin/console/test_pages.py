"""Each console page against a real gateway: what the operator changes in the browser is what
the admin API then holds, and what the API refuses is explained in its own words."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import Page, expect

from tests.fixtures.gateway import Gateway
from tests.gateway.admin.console.browser import open_page, sign_in
from tests.gateway.admin.console.console_actions import create_tenant, dialog, key_row


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def tenant_by_name(gateway: Gateway, name: str) -> dict:
    tenants = gateway.admin("GET", "/tenants").json()["items"]
    return next(tenant for tenant in tenants if tenant["name"] == name)


def models_status_for(gateway: Gateway, secret: str) -> int:
    """The status of the gateway's own /v1/models for `secret`: 200 while the key works."""
    return httpx.get(
        f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {secret}"}
    ).status_code


def test_wrong_admin_key_is_refused_with_the_apis_message(page: Page) -> None:
    sign_in(page, "not-the-admin-key")
    expect(page.get_by_role("alert")).to_have_text("Invalid admin key.")
    expect(page.get_by_role("navigation")).to_be_hidden()


def test_sign_in_and_navigation_work_from_the_keyboard(page: Page) -> None:
    page.goto("/admin/ui/")
    expect(page.get_by_label("Admin key")).to_be_focused()
    page.keyboard.type("admin-test-key-0123456789")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Tenants", level=1).wait_for()
    keys_link = page.get_by_role("navigation").get_by_role("link", name="Keys")
    for _ in range(10):
        page.keyboard.press("Tab")
        if keys_link.evaluate("link => link === document.activeElement"):
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_focused()
    expect(keys_link).to_have_attribute("aria-current", "page")


def test_tenant_edit_disable_enable_and_delete(console: Page, gateway: Gateway) -> None:
    name = unique("legal")
    create_tenant(console, name)
    console.get_by_role("button", name=f"Edit tenant {name}").click()
    form = dialog(console)
    form.get_by_label("Requests per minute").fill("60")
    form.get_by_label("Tokens per day").fill("250000")
    form.get_by_label("Safety policy").fill("strict")
    form.get_by_label("Default model").fill("tenant-a")
    metadata = form.get_by_role("group", name="Metadata")
    metadata.get_by_label("Key").fill("team")
    metadata.get_by_label("Value").fill("Legal & Compliance")
    form.get_by_role("button", name="Save tenant").click()
    form.wait_for(state="detached")

    row = console.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("60 req/min")
    expect(row).to_contain_text("strict")
    stored = tenant_by_name(gateway, name)
    assert stored["limits"]["requests_per_minute"] == 60
    assert stored["limits"]["tokens_per_day"] == 250000
    assert stored["safety_policy"] == "strict"
    assert stored["default_model"] == "tenant-a"
    assert stored["metadata"] == {"team": "Legal & Compliance"}
    assert stored["models"]["tenant-a"] == {"base_model": "base", "adapter": "tenant-a"}

    console.get_by_role("button", name=f"Disable tenant {name}").click()
    dialog(console).get_by_role("button", name="Disable").click()
    expect(row.get_by_text("disabled", exact=True)).to_be_visible()
    assert tenant_by_name(gateway, name)["enabled"] is False
    console.get_by_role("button", name=f"Enable tenant {name}").click()
    dialog(console).get_by_role("button", name="Enable").click()
    expect(row.get_by_text("enabled", exact=True)).to_be_visible()

    console.get_by_role("button", name=f"Delete tenant {name}").click()
    dialog(console).get_by_role("button", name="Delete tenant").click()
    expect(console.get_by_role("button", name=f"Edit tenant {name}")).to_have_count(0)
    assert name not in [t["name"] for t in gateway.admin("GET", "/tenants").json()["items"]]


def test_a_taken_tenant_name_is_explained_and_the_form_kept(console: Page) -> None:
    console.get_by_role("button", name="New tenant").click()
    form = dialog(console)
    form.get_by_label("Name", exact=True).fill("acme")
    form.get_by_role("button", name="Create tenant").click()
    expect(form.get_by_role("alert")).to_have_text(
        "A tenant named 'acme' already exists. (field: name)"
    )
    expect(form.get_by_label("Name", exact=True)).to_have_value("acme")


def test_key_edit_and_rotation_with_a_grace_period(console: Page, gateway: Gateway) -> None:
    name = unique("rotating")
    created = gateway.admin("POST", "/keys", json={"tenant_id": gateway.tenant_id, "name": name})
    old_secret = created.json()["secret"]
    key_id = created.json()["id"]
    open_page(console, "Keys", "API keys")

    console.get_by_role("button", name=f"Edit key {name}").click()
    form = dialog(console)
    form.get_by_role("checkbox", name="tenant-a").check()
    form.get_by_label("Tokens per minute").fill("5000")
    form.get_by_label("Expires").fill("2099-12-31T23:30")
    form.get_by_role("button", name="Save key").click()
    form.wait_for(state="detached")
    row = key_row(console, name)
    expect(row).to_contain_text("tenant-a")
    expect(row).to_contain_text("5,000 tok/min")
    expect(row).to_contain_text("2099-12-31 23:30")
    stored = gateway.admin("GET", f"/keys/{key_id}").json()
    assert stored["allowed_models"] == ["tenant-a"]
    assert stored["limits"]["tokens_per_minute"] == 5000
    assert stored["expires_at"] is not None

    console.get_by_role("button", name=f"Rotate key {name}").click()
    dialog(console).get_by_label("Grace period (seconds)").fill("3600")
    dialog(console).get_by_role("button", name="Rotate key").click()
    shown = console.get_by_role("dialog", name=f"Key {name} rotated")
    new_secret = shown.get_by_label("Secret").input_value()
    expect(shown).to_contain_text("The previous secret works for 60 min more")
    shown.get_by_role("button", name="Done").click()
    expect(row).to_contain_text("old secret works until")

    assert new_secret != old_secret
    assert models_status_for(gateway, new_secret) == 200
    assert models_status_for(gateway, old_secret) == 200


def test_keys_filter_by_tenant_status_and_text(console: Page, gateway: Gateway) -> None:
    tenant = unique("filtered")
    create_tenant(console, tenant)
    tenant_id = tenant_by_name(gateway, tenant)["id"]
    for name in ("alpha", "beta"):
        body = {"tenant_id": tenant_id, "name": f"{tenant}-{name}"}
        gateway.admin("POST", "/keys", json=body).raise_for_status()
    console.get_by_role("link", name=f"Keys of {tenant}").click()
    page_rows = console.get_by_role("table", name="API keys").get_by_role("row")
    expect(page_rows).to_have_count(3)  # the header and the tenant's two keys
    console.get_by_label("Search").fill("beta")
    expect(page_rows).to_have_count(2)
    expect(key_row(console, f"{tenant}-beta")).to_be_visible()
    console.get_by_label("Status").select_option("revoked")
    expect(console.get_by_text("No keys match.")).to_be_visible()


def test_audit_log_shows_changes_and_filters_by_target(console: Page) -> None:
    name = unique("audited")
    create_tenant(console, name)
    console.get_by_role("button", name=f"Disable tenant {name}").click()
    dialog(console).get_by_role("button", name="Disable").click()
    expect(console.get_by_role("button", name=f"Enable tenant {name}")).to_be_visible()

    open_page(console, "Audit log", "Audit log")
    table = console.get_by_role("table", name="Audit log")
    first = table.get_by_role("row").nth(1)
    expect(first).to_contain_text("tenant.disable")
    expect(first).to_contain_text(name)
    first.get_by_role("button", name="Show only changes to").click()
    rows = table.get_by_role("row")
    expect(rows).to_have_count(3)  # the header, tenant.disable, tenant.create
    expect(rows.nth(2)).to_contain_text("tenant.create")
    summary = rows.nth(2).locator("summary")
    expect(summary).to_contain_text(f"name={name}")
    summary.click()
    expect(rows.nth(2).locator("pre")).to_contain_text(f'"name": "{name}"')

    console.get_by_label("Action").fill("tenant.create")
    console.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)


def test_adapters_page_lists_the_registry(console: Page, gateway: Gateway) -> None:
    name = unique("support-lora")
    body = {
        "name": name,
        "path": f"/adapters/{name}",
        "base_model": "base",
        "tenant_id": gateway.tenant_id,
        "rank": 16,
    }
    registered = gateway.admin("POST", "/adapters", json=body)
    assert registered.status_code == 201, registered.text

    open_page(console, "Adapters", "Adapters")
    row = (
        console.get_by_role("table", name="LoRA adapters").get_by_role("row").filter(has_text=name)
    )
    expect(row).to_contain_text("acme")  # the owner, by name
    expect(row).to_contain_text("16")
    expect(row).to_contain_text(f"/adapters/{name}")

    open_page(console, "Tenants", "Tenants")
    console.get_by_role("button", name="New tenant").click()
    suggested = console.locator("datalist#known-adapters option")
    assert name in [option.get_attribute("value") for option in suggested.all()]
