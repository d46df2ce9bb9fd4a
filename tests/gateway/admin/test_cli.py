"""The admin CLI against a real gateway process: tables, --json, and errors with exit codes."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.admin import adapters_cli, usage_cli
from gateway.admin.cli import ADMIN_KEY_ENV, URL_ENV, add_commands
from gateway.admin.schemas import MAX_PAGE
from tests.fixtures.gateway import ACME_MODELS, ADMIN_KEY, Gateway
from tests.fixtures.processes import free_port
from tests.gateway.admin.helpers import unique


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def table(self) -> list[list[str]]:
        """Rows of an aligned table, cut at the header's column starts."""
        assert self.code == 0, self.err
        header, *rows = self.out.splitlines()
        starts = [
            i for i, char in enumerate(header) if char != " " and (i == 0 or header[i - 1] == " ")
        ]
        ends = [*starts[1:], None]
        return [
            [line[start:end].strip() for start, end in zip(starts, ends, strict=True)]
            for line in [header, *rows]
        ]


@pytest.fixture
def cli(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """`cli("tenants", "list")` runs `vllm-gateway tenants list` against the gateway."""
    monkeypatch.setenv(URL_ENV, gateway.url)
    monkeypatch.setenv(ADMIN_KEY_ENV, ADMIN_KEY)

    def run(*argv: str) -> Run:
        parser = argparse.ArgumentParser(prog="vllm-gateway")
        commands = parser.add_subparsers(dest="command", required=True)
        for add in (add_commands, adapters_cli.add_commands, usage_cli.add_commands):
            add(commands)
        args = parser.parse_args(argv)
        code = args.func(args)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def fields(run: Run) -> dict[str, str]:
    """A FIELD VALUE table as a dict."""
    return {row[0]: row[1] for row in run.table()[1:]}


def create_tenant(cli: Any, *options: str) -> dict[str, Any]:
    return cli("tenants", "create", unique("t"), "--json", *options).json()


def test_tenants_create_shows_the_tenant_as_a_table(cli: Any) -> None:
    name = unique("acme")
    run = cli(
        "tenants",
        "create",
        name,
        "--model",
        "chat=base",
        "--model",
        "support=base:tenant-a",
        "--default-model",
        "chat",
        "--rpm",
        "60",
        "--meta",
        "team=ml",
    )
    shown = fields(run)
    assert run.table()[0] == ["FIELD", "VALUE"]
    assert shown["name"] == name
    assert shown["models"] == "chat=base, support=base:tenant-a"
    assert shown["default_model"] == "chat"
    assert shown["limits"] == "requests_per_minute=60"
    assert shown["metadata"] == "team=ml"
    assert shown["enabled"] == "yes"
    assert shown["id"].startswith("tenant_")


def test_tenants_list_table_and_json(cli: Any) -> None:
    tenant = create_tenant(cli, "--model", "chat=base")
    rows = cli("tenants", "list").table()
    assert rows[0] == ["ID", "NAME", "ENABLED", "DEFAULT", "MODELS"]
    assert [tenant["id"], tenant["name"], "yes", "-", "chat=base"] in rows[1:]
    listed = cli("tenants", "list", "--json").json()["items"]
    assert tenant in listed


def test_tenants_update_disable_enable_delete(cli: Any) -> None:
    tenant = create_tenant(cli, "--model", "chat=base", "--rpm", "5", "--tpm", "100")
    new_name = unique("renamed")
    updated = cli("tenants", "update", tenant["id"], "--name", new_name, "--rpm", "none", "--json")
    assert updated.json()["name"] == new_name
    assert updated.json()["limits"]["requests_per_minute"] is None
    assert updated.json()["limits"]["tokens_per_minute"] == 100
    assert fields(cli("tenants", "disable", tenant["id"]))["enabled"] == "no"
    assert fields(cli("tenants", "enable", tenant["id"]))["enabled"] == "yes"
    assert fields(cli("tenants", "get", tenant["id"]))["name"] == new_name
    deleted = cli("tenants", "delete", tenant["id"])
    assert deleted.code == 0
    assert deleted.out.strip() == f"deleted tenant {tenant['id']}"
    missing = cli("tenants", "get", tenant["id"])
    assert missing.code == 1
    assert missing.out == ""
    assert f"No tenant with id '{tenant['id']}'" in missing.err
    assert "(HTTP 404)" in missing.err


def test_keys_create_prints_the_secret_once(cli: Any) -> None:
    tenant = create_tenant(cli, "--model", "chat=base", "--model", "other=base")
    run = cli(
        "keys", "create", "--tenant", tenant["id"], "--name", "ci", "--expires-in", "1d",
        "--allow-model", "chat", "--tpm", "1000",
    )  # fmt: skip
    shown = fields(run)
    assert shown["secret"].startswith("sk-")
    assert shown["prefix"] == shown["secret"][:8]
    assert shown["allowed_models"] == "chat"
    assert shown["status"] == "active"
    assert shown["expires_at"].endswith("Z")
    assert "not shown again" in run.err

    key = cli("keys", "get", shown["id"], "--json").json()
    assert "secret" not in key
    assert key["limits"]["tokens_per_minute"] == 1000
    assert 86000 < key["expires_at"] - key["created_at"] <= 86400


def test_keys_list_pages_and_update_rotate_revoke(cli: Any) -> None:
    tenant = create_tenant(cli, "--model", "chat=base")
    ids = [
        cli("keys", "create", "--tenant", tenant["id"], "--name", f"k{i}", "--json").json()["id"]
        for i in range(3)
    ]
    first = cli("keys", "list", "--tenant", tenant["id"], "--limit", "2")
    rows = first.table()
    assert rows[0] == ["ID", "TENANT", "NAME", "PREFIX", "STATUS", "EXPIRES", "LAST_USED"]
    assert [row[0] for row in rows[1:3]] == ids[:2]
    assert first.out.splitlines()[-1] == "more: --offset 2"
    rest = cli("keys", "list", "--tenant", tenant["id"], "--offset", "2", "--json").json()
    assert [key["id"] for key in rest["items"]] == ids[2:]
    assert rest["next_offset"] is None

    updated = cli("keys", "update", ids[0], "--name", "renamed", "--allow-model", "chat", "--json")
    assert updated.json()["name"] == "renamed"
    assert updated.json()["allowed_models"] == ["chat"]
    every = cli("keys", "update", ids[0], "--all-models", "--expires-at", "never", "--json")
    assert every.json()["allowed_models"] is None
    rotated = cli("keys", "rotate", ids[0], "--grace", "1h", "--json").json()
    assert rotated["secret"].startswith("sk-")
    assert rotated["grace_until"] is not None
    assert fields(cli("keys", "revoke", ids[0]))["status"] == "revoked"


def test_audit_list(cli: Any) -> None:
    tenant = create_tenant(cli)
    cli("tenants", "disable", tenant["id"])
    rows = cli("audit", "list", "--target", tenant["id"]).table()
    assert rows[0] == ["AT", "ADMIN", "ACTION", "TARGET", "CHANGE"]
    assert [row[2] for row in rows[1:]] == ["tenant.disable", "tenant.create"]
    assert rows[1][3] == f"tenant {tenant['id']}"
    assert rows[1][4] == '{"enabled":false}'
    only = cli("audit", "list", "--action", "tenant.disable", "--limit", "1", "--json").json()
    assert [entry["action"] for entry in only["items"]] == ["tenant.disable"]


def test_tenant_audit_and_adapter_lists_show_a_page_and_how_to_get_the_next(cli: Any) -> None:
    tenants = [create_tenant(cli) for _ in range(3)]
    first = cli("tenants", "list", "--limit", "1")
    assert len(first.table()) == 3  # the header, one tenant, and then:
    assert first.out.splitlines()[-1] == "more: --offset 1"
    rest = cli("tenants", "list", "--offset", "1", "--limit", str(MAX_PAGE), "--json").json()
    assert [tenant["id"] for tenant in rest["items"]][-3:] == [t["id"] for t in tenants]
    assert rest["next_offset"] is None

    target = tenants[0]["id"]
    cli("tenants", "disable", target)
    newest = cli("audit", "list", "--target", target, "--limit", "1")
    assert newest.table()[1][2] == "tenant.disable"
    assert newest.out.splitlines()[-1] == "more: --offset 1"
    older = cli("audit", "list", "--target", target, "--offset", "1", "--json").json()
    assert [entry["action"] for entry in older["items"]] == ["tenant.create"]

    owner = tenants[1]["id"]
    names = sorted(unique("adapter") for _ in range(2))
    for name in names:
        registered = cli("adapters", "register", name, "--path", f"/srv/{name}",
                         "--base-model", "base", "--tenant", owner)  # fmt: skip
        assert registered.code == 0, registered.err
    page = cli("adapters", "list", "--tenant", owner, "--limit", "1")
    assert [row[0] for row in page.table()[1:2]] == names[:1]
    assert page.out.splitlines()[-1] == "more: --offset 1"
    last = cli("adapters", "list", "--tenant", owner, "--offset", "1", "--json").json()
    assert [adapter["name"] for adapter in last["items"]] == names[1:]
    assert last["next_offset"] is None


def test_usage_reads_every_page(
    cli: Any, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    for model in ACME_MODELS:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        chat = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers)
        assert chat.status_code == 200, chat.text
    monkeypatch.setattr("gateway.admin.cli.MAX_PAGE", 1)  # one row per page

    options = ("usage", "--tenant", gateway.tenant_id, "--group-by", "model")
    report = cli(*options, "--json").json()
    assert [row["model"] for row in report["rows"]] == sorted(ACME_MODELS)
    assert report["next_offset"] is None
    assert report["totals"]["requests"] == len(ACME_MODELS)
    rows = cli(*options).table()
    assert [row[0] for row in rows] == ["MODEL", *sorted(ACME_MODELS), "total"]


def test_api_errors_go_to_stderr_with_exit_code_1(cli: Any) -> None:
    invalid = cli("tenants", "create", "bad name")
    assert invalid.code == 1
    assert invalid.err.startswith("error: name: ")
    assert "(HTTP 400)" in invalid.err
    wrong_key = cli("tenants", "list", "--admin-key", "wrong")
    assert wrong_key.code == 1
    assert "Invalid admin key" in wrong_key.err
    unreachable = cli("tenants", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.code == 1
    assert "cannot reach" in unreachable.err


def test_malformed_model_mappings_are_usage_errors(cli: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli("tenants", "create", "x", "--model", "chat")
    assert exit_info.value.code == 2
