"""`vllm-gateway adapters ...` against a real gateway: table and JSON output, errors."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable

import pytest

from gateway.admin.adapters_cli import add_commands
from gateway.admin.cli import ADMIN_KEY_ENV, URL_ENV
from tests.fixtures.gateway import ADMIN_KEY, Gateway

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    monkeypatch.setenv(URL_ENV, gateway.url)
    monkeypatch.setenv(ADMIN_KEY_ENV, ADMIN_KEY)

    def run(*argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="vllm-gateway")
        add_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["adapters", *argv])
        code = args.func(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_register_update_list_delete(cli: Cli, gateway: Gateway) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, _ = cli("register", name, "--path", "/srv/a", "--base-model", "base", "--json")
    assert code == 0
    assert json.loads(out)["tenant_id"] is None
    code, out, _ = cli("update", name, "--tenant", gateway.tenant_id, "--rank", "16")
    assert code == 0
    assert f"tenant_id   {gateway.tenant_id}" in out and "rank        16" in out
    code, out, _ = cli("list", "--tenant", gateway.tenant_id)
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "BASE", "TENANT", "RANK", "PATH"]
    assert [name, "base", gateway.tenant_id, "16", "/srv/a"] in [row.split() for row in rows]
    assert cli("update", name, "--tenant", "none", "--rank", "none", "--json")[0] == 0
    assert json.loads(cli("get", name, "--json")[1])["rank"] is None
    assert cli("delete", name) == (0, f"deleted {name}\n", "")
    code, _, err = cli("get", name)
    assert code == 1
    assert f"No adapter named '{name}'" in err and "HTTP 404" in err
