"""Headless Chromium (Debian's `chromium` package) driven by Playwright, and the console in it.

Playwright's own browser download is not possible here, so it drives the system binary; each
launch gets a fresh temporary profile from Playwright itself (it refuses a --user-data-dir
argument to `launch`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright

from tests.fixtures.gateway import ADMIN_KEY

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP_SCREEN = {"width": 1440, "height": 900}


def launch_chromium(playwright: Playwright) -> Browser:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's browser (apt-get install -y chromium)"
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def new_context(browser: Browser, gateway_url: str) -> BrowserContext:
    """A fresh browser session, allowed to use the clipboard (for the secret's copy button)."""
    context = browser.new_context(viewport=LAPTOP_SCREEN, base_url=gateway_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway_url)
    return context


def sign_in(page: Page, admin_key: str = ADMIN_KEY) -> None:
    page.goto("/admin/ui/")
    page.get_by_label("Admin key").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()


def open_page(page: Page, name: str, heading: str) -> None:
    """Navigate with the top bar, as an operator does, and wait for the page's heading."""
    page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=heading, level=1).wait_for()
