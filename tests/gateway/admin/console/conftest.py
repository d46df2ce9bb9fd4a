"""Browser fixtures for the console tests: one Chromium per module, one fresh session per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fixtures.gateway import Gateway
from tests.gateway.admin.console.browser import launch_chromium, new_context, sign_in

# How long an expectation waits for the page to get there (5 s by default): the machine may be
# busy with other test processes, and a slow answer is not what these tests are about.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    """A fresh browser session on the console of the module's gateway, not signed in."""
    context = new_context(browser, gateway.url)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def console(page: Page) -> Page:
    """The console, signed in with the admin key, showing the tenants page."""
    sign_in(page)
    page.get_by_role("heading", name="Tenants", level=1).wait_for()
    return page
