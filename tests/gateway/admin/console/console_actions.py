"""What an operator does in the console, step by step, for the tests and the screenshots."""

from __future__ import annotations

from playwright.sync_api import Locator, Page

from tests.gateway.admin.console.browser import open_page

STANDIN_MODELS = {"base": ("base", ""), "tenant-a": ("base", "tenant-a")}


def dialog(page: Page) -> Locator:
    return page.locator("dialog[open]")


def create_tenant(
    page: Page, name: str, models: dict[str, tuple[str, str]] = STANDIN_MODELS
) -> None:
    """Tenants page -> New tenant; `models`: public name -> (base model, adapter or "")."""
    open_page(page, "Tenants", "Tenants")
    page.get_by_role("button", name="New tenant").click()
    form = dialog(page)
    form.get_by_label("Name", exact=True).fill(name)
    models_fieldset = form.get_by_role("group", name="Models")
    for index, (public, (base, adapter)) in enumerate(models.items()):
        if index > 0:
            models_fieldset.get_by_role("button", name="Add model").click()
        row = models_fieldset.locator(".row").nth(index)
        row.get_by_label("Public name").fill(public)
        row.get_by_label("Base model").fill(base)
        row.get_by_label("Adapter").fill(adapter)
    form.get_by_role("button", name="Create tenant").click()
    form.wait_for(state="detached")
    page.get_by_role("button", name=f"Edit tenant {name}").wait_for()


def create_key(page: Page, tenant: str, name: str) -> str:
    """Keys page -> New key for `tenant`; returns the secret from the show-once dialog."""
    open_page(page, "Keys", "API keys")
    page.get_by_role("button", name="New key").click()
    form = dialog(page)
    form.get_by_label("Tenant", exact=True).select_option(label=tenant)
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("dialog", name=f"Key {name} created")
    secret = shown.get_by_label("Secret").input_value()
    shown.get_by_role("button", name="Done").click()
    shown.wait_for(state="detached")
    return secret


def key_row(page: Page, key_name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_text(key_name, exact=True))


def revoke_key(page: Page, key_name: str) -> None:
    open_page(page, "Keys", "API keys")
    page.get_by_role("button", name=f"Revoke key {key_name}").click()
    dialog(page).get_by_role("button", name="Revoke key").click()
    dialog(page).wait_for(state="detached")
    key_row(page, key_name).get_by_text("revoked", exact=True).wait_for()
