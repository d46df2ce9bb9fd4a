"""Lists longer than a page of the admin API: the console shows the first page and loads the
rest on request, and its lookups (tenant names, selects) know every record."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.fixtures.gateway import Gateway
from tests.gateway.admin.console.browser import open_page

PAGE_SIZE = 100  # the console's page (api.js)


def test_tenants_beyond_the_first_page_are_a_click_away(console: Page, gateway: Gateway) -> None:
    for index in range(PAGE_SIZE + 4):
        created = gateway.admin("POST", "/tenants", json={"name": f"paged-{index:03}"})
        assert created.status_code == 201, created.text
    tenants = PAGE_SIZE + 5  # and the fixture's own
    open_page(console, "Keys", "API keys")
    expect(console.get_by_label("Tenant", exact=True).locator("option")).to_have_count(
        tenants + 1  # and "All tenants"
    )

    open_page(console, "Tenants", "Tenants")
    rows = console.get_by_role("table", name="Tenants").locator("tbody tr")
    expect(rows).to_have_count(PAGE_SIZE)
    more = console.get_by_role("button", name="Load more")
    more.click()
    expect(rows).to_have_count(tenants)
    expect(rows.last).to_contain_text("paged-103")
    expect(more).to_be_hidden()
