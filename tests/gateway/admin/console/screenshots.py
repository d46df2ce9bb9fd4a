"""Screenshots of every console page with real data, for the README.

Starts a stand-in and a gateway, sets up tenants, keys and adapters through the admin API,
sends real traffic with the openai SDK, then photographs each page in headless Chromium at a
laptop's screen size. Run from the repository root:

    .venv/bin/python -m tests.gateway.admin.console.screenshots docs
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from playwright.sync_api import Page, sync_playwright

from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.standin import start_standin
from tests.gateway.admin.console.browser import launch_chromium, new_context, open_page, sign_in
from tests.gateway.admin.console.console_actions import dialog

ADAPTERS = ("tenant-a", "tenant-b", "legal-v2")
TENANTS: list[dict[str, Any]] = [
    {
        "name": "globex-legal",
        "models": {
            "contracts": {"base_model": "base", "adapter": "legal-v2"},
            "chat": {"base_model": "base"},
        },
        "default_model": "chat",
        "limits": {"requests_per_minute": 120, "tokens_per_day": 2_000_000},
        "safety_policy": "pii-redact",
    },
    {
        "name": "initech-research",
        "models": {
            "base": {"base_model": "base"},
            "tuned": {"base_model": "base", "adapter": "tenant-b"},
        },
        "limits": {"max_concurrent": 8},
    },
    {"name": "umbrella-support", "models": {"chat": {"base_model": "base"}}},
]
# (tenant, key name, key options, model, requests)
TRAFFIC: list[tuple[str, str, dict[str, Any], str, int]] = [
    ("acme", "web-frontend", {}, "tenant-a", 14),
    (
        "acme",
        "batch-jobs",
        {"allowed_models": ["tenant-b"], "limits": {"tokens_per_minute": 20000}},
        "tenant-b",
        9,
    ),
    ("globex-legal", "contracts-bot", {"expires_in_s": 30 * 86400}, "contracts", 11),
    ("globex-legal", "analyst-notebook", {}, "chat", 5),
    ("initech-research", "eval-runner", {}, "tuned", 7),
]


def ok(response: Any) -> Any:
    response.raise_for_status()
    return response.json()


def populate(gateway: Gateway) -> int:
    """Tenants, adapters, keys and traffic; returns how many requests were sent."""
    tenant_ids = {"acme": gateway.tenant_id}
    for tenant in TENANTS:
        tenant_ids[tenant["name"]] = ok(gateway.admin("POST", "/tenants", json=tenant))["id"]
    owners = {"tenant-a": "acme", "tenant-b": None, "legal-v2": "globex-legal"}
    for rank, name in zip((16, 8, 32), ADAPTERS, strict=True):
        owner = owners[name]
        body = {"name": name, "path": f"/adapters/{name}", "base_model": "base", "rank": rank}
        body["tenant_id"] = tenant_ids[owner] if owner else None
        gateway.admin("POST", "/adapters", json=body)  # absent registry: the page says so
    sent = 0
    for tenant, name, options, model, requests in TRAFFIC:
        body = {"tenant_id": tenant_ids[tenant], "name": name, **options}
        secret = ok(gateway.admin("POST", "/keys", json=body))["secret"]
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
        for index in range(requests):
            messages = [{"role": "user", "content": f"Summarise ticket {index} in one line."}]
            client.chat.completions.create(
                model=model, messages=messages, max_tokens=16 + 8 * index
            )
            sent += 1
        with contextlib.suppress(openai.NotFoundError):  # a model the tenant lacks: rejected
            client.chat.completions.create(model="gpt-4o", messages=messages)
        sent += 1
    retired = ok(
        gateway.admin(
            "POST",
            "/keys",
            json={"tenant_id": tenant_ids["initech-research"], "name": "intern-2024"},
        )
    )
    ok(gateway.admin("POST", f"/keys/{retired['id']}/revoke"))
    web = next(k for k in ok(gateway.admin("GET", "/keys"))["items"] if k["name"] == "web-frontend")
    ok(gateway.admin("POST", f"/keys/{web['id']}/rotate", json={"grace_period_s": 86400}))
    ok(gateway.admin("POST", f"/tenants/{tenant_ids['umbrella-support']}/disable"))
    return sent


def wait_for_usage(gateway: Gateway, requests: int) -> None:
    """The ledger writes about once a second; the usage page should show all the traffic."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = gateway.admin("GET", "/usage", params={"group_by": ""})
        if response.status_code != 200 or response.json()["totals"]["requests"] >= requests:
            return
        time.sleep(0.5)


def shoot(page: Page, out_dir: Path, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=out_dir / f"console-{name}.png")
    print(out_dir / f"console-{name}.png")


def photograph(page: Page, out_dir: Path) -> None:
    page.goto("/admin/ui/")
    page.get_by_label("Admin key").wait_for()
    shoot(page, out_dir, "signin")
    sign_in(page)
    page.get_by_role("table", name="Tenants").wait_for()
    shoot(page, out_dir, "tenants")
    page.get_by_role("button", name="Edit tenant globex-legal").click()
    shoot(page, out_dir, "tenant-edit")
    dialog(page).get_by_role("button", name="Cancel").click()
    open_page(page, "Keys", "API keys")
    page.get_by_role("table", name="API keys").wait_for()
    shoot(page, out_dir, "keys")
    page.get_by_role("button", name="New key").click()
    dialog(page).get_by_label("Tenant", exact=True).select_option(label="acme")
    dialog(page).get_by_label("Name", exact=True).fill("mobile-app")
    dialog(page).get_by_role("checkbox", name="tenant-a").check()
    dialog(page).get_by_role("button", name="Create key").click()
    page.get_by_role("dialog", name="Key mobile-app created").get_by_role(
        "button", name="Copy"
    ).click()
    shoot(page, out_dir, "key-secret")
    page.get_by_role("button", name="Done").click()
    open_page(page, "Adapters", "Adapters")
    page.get_by_role("table", name="LoRA adapters").or_(page.locator(".empty")).first.wait_for()
    shoot(page, out_dir, "adapters")
    open_page(page, "Usage", "Usage")
    page.get_by_role("table", name="Usage totals").or_(page.locator(".empty")).first.wait_for()
    shoot(page, out_dir, "usage")
    open_page(page, "Requests", "Requests")
    page.get_by_role("table", name="Requests, newest first").wait_for()
    shoot(page, out_dir, "requests")
    open_page(page, "Audit log", "Audit log")
    page.get_by_role("table", name="Audit log").wait_for()
    shoot(page, out_dir, "audit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where console-<page>.png go, e.g. docs")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        lora_args = [f"--lora={name}=/adapters/{name}" for name in ADAPTERS]
        standin = start_standin(log_dir, *lora_args)
        try:
            gateway = start_gateway(standin.url, log_dir)
            try:
                wait_for_usage(gateway, populate(gateway))
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    context = new_context(browser, gateway.url)
                    photograph(context.new_page(), args.out_dir)
                    browser.close()
            finally:
                gateway.stop()
        finally:
            standin.stop()


if __name__ == "__main__":
    main()
