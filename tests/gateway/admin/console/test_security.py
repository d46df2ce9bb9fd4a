"""The console's defences, checked in a real browser and on the wire: a strict CSP it never
breaks itself, the admin key kept out of URLs and cookies, and data rendered as text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect

from gateway.tenancy.models import ModelRoute, Tenant
from gateway.tenancy.secrets import new_id
from gateway.tenancy.sqlite_store import SqliteStore
from tests.fixtures.gateway import ADMIN_KEY, Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.gateway.admin.console.browser import new_context, open_page, sign_in
from tests.gateway.admin.console.console_actions import create_key, dialog

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.title='pwned'\">"
PAGES = [
    ("Tenants", "Tenants"),
    ("Keys", "API keys"),
    ("Adapters", "Adapters"),
    ("Usage", "Usage"),
    ("Requests", "Requests"),
    ("Audit log", "Audit log"),
]


@pytest.mark.parametrize("path", ["/admin/ui/", "/admin/ui/js/app.js", "/admin/ui/console.css"])
def test_console_files_carry_a_strict_policy(gateway: Gateway, path: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_console_serves_only_its_own_files(gateway: Gateway) -> None:
    root = httpx.get(gateway.url + "/admin/ui")
    assert root.status_code == 308
    assert root.headers["location"] == "/admin/ui/"
    index = httpx.get(gateway.url + "/admin/ui/")
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    script = httpx.get(gateway.url + "/admin/ui/js/app.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    for path in ["/admin/ui/nope.js", "/admin/ui/%2e%2e/api.py", "/admin/ui/..%2fapi.py"]:
        missing = httpx.get(gateway.url + path)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "unknown_url"


def test_every_page_and_dialog_keeps_to_the_policy(page: Page) -> None:
    """Chromium reports each refused inline style or script as a console error."""
    problems: list[str] = []
    page.on("console", lambda m: problems.extend(_policy_errors(m)))
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page)
    for link, heading in PAGES:
        open_page(page, link, heading)
    for link, heading, opens in [
        ("Tenants", "Tenants", "New tenant"),
        ("Keys", "API keys", "New key"),
        ("Tenants", "Tenants", "Edit tenant acme"),
    ]:
        open_page(page, link, heading)
        page.get_by_role("button", name=opens).click()
        dialog(page).get_by_role("button", name="Cancel").click()
    create_key(page, "acme", "policy-check")
    assert problems == []


def _policy_errors(message: ConsoleMessage) -> list[str]:
    return [message.text] if "Content Security Policy" in message.text else []


def test_admin_key_stays_out_of_urls_cookies_and_storage_after_sign_out(
    page: Page, gateway: Gateway
) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    sign_in(page)
    for link, heading in PAGES:
        open_page(page, link, heading)

    api_calls = [r for r in requests if "/admin/v1/" in r.url]
    assert api_calls
    assert all(r.headers.get("authorization") == f"Bearer {ADMIN_KEY}" for r in api_calls)
    assert not [r.url for r in requests if ADMIN_KEY in r.url]
    assert page.context.cookies() == []
    assert ADMIN_KEY not in page.url

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


@pytest.fixture(scope="module")
def hostile_gateway(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose store holds a tenant named like a script and markup in metadata.

    The admin API refuses such a name, so the tenant is written to the store directly, as a
    record from an older version or another tool could be: the console must not trust the
    API's validation to keep markup out of what it renders.
    """
    log_dir = tmp_path_factory.mktemp("hostile")
    gateway = start_gateway(standin.url, log_dir)
    database = log_dir / f"gateway-{gateway.url.rsplit(':', 1)[1]}.db"
    # Playwright's sync API owns this thread's event loop: run the store's coroutines beside it.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _insert_hostile_tenant(database)).result()
    yield gateway
    gateway.stop()


async def _insert_hostile_tenant(database: Path) -> None:
    store = SqliteStore(database)
    try:
        tenant = Tenant(
            id=new_id("tenant"),
            name=SCRIPT_NAME,
            models={"base": ModelRoute("base")},
            metadata={"note": IMG_PAYLOAD},
        )
        await store.create_tenant(tenant)
    finally:
        await store.close()


@pytest.fixture
def hostile_page(browser: Browser, hostile_gateway: Gateway) -> Iterator[Page]:
    context = new_context(browser, hostile_gateway.url)
    yield context.new_page()
    context.close()


def test_a_tenant_named_like_a_script_is_shown_as_text(
    hostile_page: Page, hostile_gateway: Gateway
) -> None:
    page = hostile_page
    alerts: list[str] = []
    page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    sign_in(page)
    page.get_by_role("heading", name="Tenants", level=1).wait_for()
    tenants = hostile_gateway.admin("GET", "/tenants").json()["items"]
    hostile = next(t for t in tenants if t["name"] == SCRIPT_NAME)
    patch = {"metadata": {"note": IMG_PAYLOAD, "by": SCRIPT_NAME}}
    assert hostile_gateway.admin("PATCH", f"/tenants/{hostile['id']}", json=patch).is_success

    for link, heading in PAGES:
        open_page(page, link, heading)
        if link in ("Tenants", "Audit log"):
            expect(page.get_by_text(SCRIPT_NAME).first).to_be_visible()
    page.get_by_role("navigation").get_by_role("link", name="Tenants").click()
    page.get_by_role("button", name=f"Edit tenant {SCRIPT_NAME}").click()
    expect(dialog(page).get_by_role("heading")).to_have_text(f"Edit tenant {SCRIPT_NAME}")
    expect(dialog(page).get_by_role("textbox", name="Value").first).to_have_value(IMG_PAYLOAD)

    assert alerts == []
    assert page.locator("script").count() == 1  # the console's own module, nothing injected
    assert page.locator("img[src=x]").count() == 0
    assert page.title() != "pwned"


def test_the_api_refusing_a_script_name_is_explained(console: Page) -> None:
    open_page(console, "Tenants", "Tenants")
    console.get_by_role("button", name="New tenant").click()
    dialog(console).get_by_label("Name", exact=True).fill(SCRIPT_NAME)
    dialog(console).get_by_role("button", name="Create tenant").click()
    expect(dialog(console).get_by_role("alert")).to_contain_text("(field: name)")
    expect(dialog(console).get_by_role("alert")).to_contain_text("should match pattern")
