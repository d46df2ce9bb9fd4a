"""The operator's story in a real browser against a real gateway: create a tenant and a key in
the console, call the gateway with that key through the openai SDK, see the usage in the
charts, revoke the key, and see the SDK refused."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.gateway import Gateway
from tests.gateway.admin.console.browser import open_page
from tests.gateway.admin.console.console_actions import (
    create_key,
    create_tenant,
    key_row,
    revoke_key,
)

# Long enough for a key-cache refresh and a ledger flush (each about a second) on a busy machine.
SETTLE_S = 20.0


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def client(gateway: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)


def chat(gateway: Gateway, secret: str, **options: object) -> openai.types.CompletionUsage:
    """One chat completion; returns the usage the client saw (streamed or not)."""
    request = {"model": "tenant-a", "messages": [{"role": "user", "content": "hello"}]}
    if options.get("stream"):
        chunks = client(gateway, secret).chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
        usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
        assert len(usage) == 1
        return usage[0]
    completion = client(gateway, secret).chat.completions.create(**request)
    assert completion.choices[0].message.content
    assert completion.usage is not None
    return completion.usage


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait for state that settles asynchronously (caches, the ledger's flush); no timing claim."""
    deadline = time.monotonic() + SETTLE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {SETTLE_S:.0f} s: {what}")
        time.sleep(0.2)


def refused(gateway: Gateway, secret: str) -> bool:
    try:
        chat(gateway, secret)
    except openai.AuthenticationError:
        return True
    return False


def test_key_created_in_the_console_works_until_revoked_there(
    console: Page, gateway: Gateway
) -> None:
    tenant, key = unique("support"), unique("chatbot")
    create_tenant(console, tenant)
    secret = create_key(console, tenant, key)
    assert secret.startswith("sk-")

    assert chat(gateway, secret).total_tokens > 0

    revoke_key(console, key)
    eventually(lambda: refused(gateway, secret), "the revoked key is refused")
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, secret)


def test_the_copy_button_copies_the_secret(console: Page) -> None:
    tenant, key = unique("copy"), unique("copied")
    create_tenant(console, tenant)
    open_page(console, "Keys", "API keys")
    console.get_by_role("button", name="New key").click()
    form = console.locator("dialog[open]")
    form.get_by_label("Tenant", exact=True).select_option(label=tenant)
    form.get_by_label("Name", exact=True).fill(key)
    form.get_by_role("button", name="Create key").click()
    shown = console.get_by_role("dialog", name=f"Key {key} created")
    shown.get_by_role("button", name="Copy").click()
    expect(shown.get_by_role("status")).to_have_text("Copied to the clipboard.")
    copied = console.evaluate("navigator.clipboard.readText()")
    assert copied == shown.get_by_label("Secret").input_value()
    assert copied.startswith("sk-")


def usage_totals(page: Page, key: str) -> list[str]:
    """Press Show and read the key's totals row: requests, prompt, completion, errors, rejected."""
    page.get_by_role("button", name="Show").click()
    row = page.get_by_role("table", name="Usage totals").get_by_role("row").filter(has_text=key)
    if row.count() == 0:
        return []
    cells = row.first.get_by_role("cell").all_inner_texts()
    return [cell.replace(",", "").replace("\u202f", "") for cell in cells[1:]]


def test_usage_of_a_console_created_key_appears_in_the_charts(
    console: Page, gateway: Gateway
) -> None:
    tenant, key = unique("analytics"), unique("reporter")
    create_tenant(console, tenant)
    secret = create_key(console, tenant, key)
    seen = [chat(gateway, secret), chat(gateway, secret, stream=True), chat(gateway, secret)]
    prompt = sum(usage.prompt_tokens for usage in seen)
    completion = sum(usage.completion_tokens for usage in seen)

    open_page(console, "Usage", "Usage")
    console.get_by_label("Tenant", exact=True).select_option(label=tenant)
    console.get_by_label("Split by").select_option("key")
    console.get_by_role("button", name="Show").click()
    unavailable = console.get_by_text("is not available on this gateway")
    if unavailable.count():
        pytest.fail(console.locator(".empty").inner_text())
    expected = ["3", str(prompt), str(completion), "0", "0"]
    eventually(lambda: usage_totals(console, key) == expected, f"usage of {key} is {expected}")

    bars = console.locator("svg rect.bar title")
    assert any(key in title and "3 requests" in title for title in bars.all_text_contents())
    expect(console.get_by_role("list", name="Series")).to_contain_text(key)

    with console.expect_download() as download:
        console.get_by_role("button", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert sum(int(row["requests"]) for row in rows) == 3
    assert sum(int(row["prompt_tokens"]) for row in rows) == prompt


def test_a_revoked_key_shows_as_revoked_and_cannot_be_rotated(
    console: Page, gateway: Gateway
) -> None:
    tenant, key = unique("revoked"), unique("old")
    create_tenant(console, tenant)
    create_key(console, tenant, key)
    revoke_key(console, key)
    expect(console.get_by_role("button", name=f"Rotate key {key}")).to_be_disabled()
    console.get_by_label("Status").select_option("active")
    expect(key_row(console, key)).to_have_count(0)
