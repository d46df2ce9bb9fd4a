"""GET /admin/v1/usage and `vllm-gateway usage` over real HTTP, against the admin app served
by uvicorn in a child process, reading a ledger file that this module filled beforehand."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.admin.usage_cli import add_commands
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.gateway import ADMIN_KEY
from tests.fixtures.processes import PYTHON, ServerProcess, free_port, running_server
from tests.gateway.usage.conftest import (
    DAY_1,
    DAY_2,
    DAY_3,
    CliRun,
    Clock,
    assert_400_naming,
    cli_against,
    new_ledger,
    noon,
    record,
)

COUNTERS = ["requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors", "rejected"]


async def fill_ledger(path: Path) -> None:
    clock = Clock(DAY_1)
    ledger = new_ledger(SqliteUsageBackend(path), path.with_name("wal"), clock=clock)
    await ledger.start()
    record(ledger, "t1", "k1", "m1", 10, 5, 200)
    record(ledger, "t1", "k1", "m1", 20, 10, 200)
    record(ledger, "t1", "k2", "m2", 0, 0, 429)
    record(ledger, "t2", "k3", "m1", 3, 0, 500)
    clock.now = noon(DAY_2)
    record(ledger, "t1", "k1", "m1", 1, 1, 200)
    record(ledger, "t1", "k1", None, 0, 0, 404)
    clock.now = noon(DAY_3)
    record(ledger, "t2", "k3", "m2", 100, 50, 200)
    await ledger.close()


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("usage-api")
    database = log_dir / "gateway.db"
    asyncio.run(fill_ledger(database))
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "--factory", "tests.gateway.usage.admin_app:create_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    env = {
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(database),
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
    }
    log_path = log_dir / "admin.log"
    with running_server(argv, port, log_path, "/admin/v1/openapi.json", env) as server:
        yield server


def get_usage(server: ServerProcess, admin_key: str | None = ADMIN_KEY, **params: str):
    headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
    return httpx.get(server.url + "/admin/v1/usage", params=params, headers=headers)


def usage_json(server: ServerProcess, **params: str) -> dict[str, Any]:
    response = get_usage(server, **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def counters(*values: int) -> dict[str, int]:
    return dict(zip(COUNTERS, values, strict=True))


def row(day: str, tenant_id: str, key_id: str, model: str | None, *values: int) -> dict:
    return {
        "day": day,
        "tenant_id": tenant_id,
        "key_id": key_id,
        "model": model,
        **counters(*values),
    }


def test_rows_by_day_tenant_key_and_model(admin_server: ServerProcess) -> None:
    report = usage_json(admin_server)
    assert report["group_by"] == ["day", "tenant", "key", "model"]
    assert report["from"] is None and report["to"] is None
    assert report["rows"] == [
        row(DAY_1, "t1", "k1", "m1", 2, 30, 15, 45, 0, 0),
        row(DAY_1, "t1", "k2", "m2", 1, 0, 0, 0, 0, 1),
        row(DAY_1, "t2", "k3", "m1", 1, 3, 0, 3, 1, 0),
        row(DAY_2, "t1", "k1", None, 1, 0, 0, 0, 0, 1),
        row(DAY_2, "t1", "k1", "m1", 1, 1, 1, 2, 0, 0),
        row(DAY_3, "t2", "k3", "m2", 1, 100, 50, 150, 0, 0),
    ]
    assert report["totals"] == counters(7, 134, 66, 200, 1, 2)


@pytest.mark.parametrize(
    ("params", "rows"),
    [
        ({"group_by": "tenant"}, [("t1", 5, 31), ("t2", 2, 103)]),
        ({"group_by": "model", "tenant_id": "t1"}, [(None, 1, 0), ("m1", 3, 31), ("m2", 1, 0)]),
        ({"group_by": "day", "from": DAY_2}, [(DAY_2, 2, 1), (DAY_3, 1, 100)]),
        ({"group_by": "day", "from": DAY_2, "to": DAY_2}, [(DAY_2, 2, 1)]),
        ({"group_by": "key", "model": "m2"}, [("k2", 1, 0), ("k3", 1, 100)]),
        ({"group_by": "tenant", "key_id": "k3", "to": DAY_1}, [("t2", 1, 3)]),
        ({"group_by": "day", "from": "2031-01-01"}, []),
        ({"group_by": "month"}, [(DAY_1[:7], 7, 134)]),
        ({"group_by": "month", "from": DAY_3}, [(DAY_3[:7], 1, 100)]),
    ],
)
def test_grouping_and_filters(
    admin_server: ServerProcess, params: dict[str, str], rows: list[tuple]
) -> None:
    report = usage_json(admin_server, **params)
    column = {"tenant": "tenant_id", "model": "model", "day": "day", "key": "key_id"}
    column["month"] = "month"
    group_column = column[params["group_by"]]
    assert [set(row) for row in report["rows"]] == [{group_column, *COUNTERS}] * len(rows)
    shown = [(row[group_column], row["requests"], row["prompt_tokens"]) for row in report["rows"]]
    assert shown == rows
    assert report["totals"]["requests"] == sum(requests for _, requests, _ in rows)


def test_totals_only(admin_server: ServerProcess) -> None:
    report = usage_json(admin_server, group_by="", tenant_id="t2")
    assert report["rows"] == [counters(2, 103, 50, 153, 1, 0)]
    assert report["totals"] == counters(2, 103, 50, 153, 1, 0)


def test_csv_has_a_header_and_the_json_rows(admin_server: ServerProcess) -> None:
    response = get_usage(admin_server, format="csv", group_by="day,model", tenant_id="t1")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.text.startswith("day,model,requests,")
    assert response.text.endswith("\r\n")
    header, *rows = list(csv.reader(io.StringIO(response.text)))
    assert header == ["day", "model", *COUNTERS]
    expected = usage_json(admin_server, group_by="day,model", tenant_id="t1")["rows"]
    assert rows == [["" if row[c] is None else str(row[c]) for c in header] for row in expected]
    assert rows[2][:3] == [DAY_2, "", "1"]  # the unknown model: an empty cell


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "2030-02-30"}, "from"),
        ({"to": "tomorrow"}, "to"),
        ({"from": "20300101"}, "from"),
        ({"from": DAY_2, "to": DAY_1}, "from"),
        ({"group_by": "day,week"}, "group_by"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(
    admin_server: ServerProcess, params: dict[str, str], param: str
) -> None:
    assert_400_naming(get_usage(admin_server, **params), param)


@pytest.mark.parametrize("admin_key", [None, "not-the-admin-key"])
def test_needs_an_admin_key(admin_server: ServerProcess, admin_key: str | None) -> None:
    response = get_usage(admin_server, admin_key, format="csv", **{"from": "bad"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.fixture
def cli(
    admin_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> CliRun:
    """`cli("--group-by", "tenant")` runs `vllm-gateway usage ...` against the admin server:
    (exit code, stdout, stderr)."""
    return cli_against(admin_server.url, "usage", add_commands, monkeypatch, capsys)


def test_cli_table(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = cli("--group-by", "tenant,model", "--from", DAY_1, "--to", DAY_2)
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert lines == [
        ["TENANT_ID", "MODEL", *(c.upper() for c in COUNTERS)],
        ["t1", "-", "1", "0", "0", "0", "0", "1"],
        ["t1", "m1", "3", "31", "16", "47", "0", "0"],
        ["t1", "m2", "1", "0", "0", "0", "0", "1"],
        ["t2", "m1", "1", "3", "0", "3", "1", "0"],
        ["total", "6", "34", "16", "50", "1", "2"],
    ]


def test_cli_json_and_csv_are_the_apis(
    cli: Callable[..., tuple[int, str, str]], admin_server: ServerProcess
) -> None:
    code, out, _ = cli("--tenant", "t1", "--key", "k1", "--model", "m1", "--json")
    assert code == 0
    params = {"tenant_id": "t1", "key_id": "k1", "model": "m1"}
    assert json.loads(out) == usage_json(admin_server, **params)
    code, out, _ = cli("--group-by", "day,key", "--csv")
    assert code == 0
    api_csv = get_usage(admin_server, group_by="day,key", format="csv").text
    assert out == api_csv.replace("\r\n", "\n")


def test_cli_errors_exit_1(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = cli("--from", "2030-02-30")
    assert (code, out) == (1, "")
    assert "HTTP 400" in err and "from" in err
    code, _, err = cli("--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach" in err
