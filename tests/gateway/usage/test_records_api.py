"""GET /admin/v1/usage/records and `vllm-gateway usage-records` over real HTTP, against the
admin app served by uvicorn in a child process, on a ledger (SQLite, or the Redis at
127.0.0.1:6379 under a prefix of this module's own) that this module filled beforehand."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bench.redis_server import delete_prefixed_keys
from gateway.admin.records_api import UsageRecordOut
from gateway.admin.records_cli import add_commands
from gateway.postgres.database import PostgresDatabase
from gateway.usage.backend import UsageBackend
from gateway.usage.postgres_backend import PostgresUsageBackend
from gateway.usage.records import RECORD_FIELDS, UsageRecord
from gateway.usage.redis_backend import RedisUsageBackend
from gateway.usage.sqlite_backend import SqliteUsageBackend
from tests.fixtures.gateway import ADMIN_KEY
from tests.fixtures.postgres import empty_tables
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

REPLICA = "http://vllm-1:8000"
# The ledger as filled: (day, tenant, key, model, prompt, completion, status, request id)
FILLED = [
    (DAY_1, "t1", "k1", "m1", 10, 5, 200, "req-a"),
    (DAY_1, "t1", "k2", "m2", 0, 0, 429, "req-b"),
    (DAY_1, "t2", "k3", "m1", 3, 0, 500, "req-other-tenant"),
    (DAY_2, "t1", "k1", "m1", 1, 1, 200, "req-c"),
    (DAY_2, "t1", "k1", None, 0, 0, 404, "req-d"),
    (DAY_3, "t1", "k2", "m1", 7, 3, 200, "req-reused"),
    (DAY_3, "t1", "k2", "m1", 8, 4, 200, "req-reused"),
]
T1_REQUESTS_NEWEST_FIRST = ["req-reused", "req-reused", "req-d", "req-c", "req-b", "req-a"]


async def fill_ledger(backend: UsageBackend, wal_dir: Path) -> None:
    clock = Clock(DAY_1)
    ledger = new_ledger(backend, wal_dir, clock=clock)
    await ledger.start()
    for number, (day, tenant, key, model, prompt, completion, status, request_id) in enumerate(
        FILLED
    ):
        clock.now = noon(day) + number  # a second apart: one order, newest first
        record(
            ledger,
            tenant,
            key,
            model,
            prompt,
            completion,
            status,
            request_id=request_id,
            upstream_model=model and f"base:{model}",
            replica=REPLICA,
        )
    await ledger.close()


@pytest.fixture(scope="module", params=["sqlite", "redis", "postgres"])
def admin_server(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp(f"records-api-{request.param}")
    database = log_dir / "gateway.db"
    env = {
        "VLLM_GATEWAY_STORE__SQLITE_PATH": str(database),
        "VLLM_GATEWAY_ADMIN__KEYS": json.dumps([ADMIN_KEY]),
    }
    prefix = f"test-{uuid.uuid4().hex}:"
    backend: UsageBackend = SqliteUsageBackend(database)
    if request.param == "redis":
        env |= {
            "VLLM_GATEWAY_STORE__REDIS_URL": redis_url,
            "VLLM_GATEWAY_STORE__REDIS_PREFIX": prefix,
        }
        backend = RedisUsageBackend(redis_url, prefix)
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        empty_tables(url)
        env |= {
            "VLLM_GATEWAY_STORE__POSTGRES_URL": url,
            "VLLM_GATEWAY_AUTH__KEY_HASH_SECRET": "records-api-test-secret",
        }
        backend = PostgresUsageBackend(PostgresDatabase(url))
    asyncio.run(fill_ledger(backend, log_dir / "wal"))
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "--factory", "tests.gateway.usage.admin_app:create_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    try:
        with running_server(
            argv, port, log_dir / "admin.log", "/admin/v1/openapi.json", env
        ) as server:
            yield server
    finally:
        if request.param == "redis":
            asyncio.run(delete_prefixed_keys(redis_url, prefix))


def get_records(
    server: ServerProcess, admin_key: str | None = ADMIN_KEY, **params: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
    return httpx.get(server.url + "/admin/v1/usage/records", params=params, headers=headers)


def records_json(server: ServerProcess, **params: Any) -> dict[str, Any]:
    response = get_records(server, **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def request_ids(page: dict[str, Any]) -> list[str]:
    return [item["request_id"] for item in page["items"]]


def test_a_tenants_records_newest_first(admin_server: ServerProcess) -> None:
    page = records_json(admin_server, tenant_id="t1")
    assert request_ids(page) == T1_REQUESTS_NEWEST_FIRST
    assert page["next_offset"] is None
    assert [set(item) for item in page["items"]] == [set(RECORD_FIELDS)] * 6
    first_request = page["items"][-1]
    assert first_request == {
        **first_request,
        "time": noon(DAY_1),
        "tenant_id": "t1",
        "key_id": "k1",
        "endpoint": "/v1/chat/completions",
        "model": "m1",
        "upstream_model": "base:m1",
        "replica": REPLICA,
        "stream": False,
        "status": 200,
        "prompt_tokens": 10,
        "cached_tokens": 0,
        "completion_tokens": 5,
        "latency_ms": 10.0,
        "ttft_ms": None,
        "estimated": False,
        "aborted": False,
    }
    unresolved = page["items"][2]
    assert (unresolved["request_id"], unresolved["model"]) == ("req-d", None)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"from": DAY_2}, ["req-reused", "req-reused", "req-d", "req-c"]),
        ({"from": DAY_2, "to": DAY_2}, ["req-d", "req-c"]),
        ({"to": DAY_1}, ["req-b", "req-a"]),
        ({"from": "2031-01-01"}, []),
    ],
)
def test_days(admin_server: ServerProcess, params: dict[str, str], expected: list[str]) -> None:
    assert request_ids(records_json(admin_server, tenant_id="t1", **params)) == expected


def test_lookup_by_request_id(admin_server: ServerProcess) -> None:
    page = records_json(admin_server, tenant_id="t1", request_id="req-c")
    assert request_ids(page) == ["req-c"]
    assert page["items"][0]["prompt_tokens"] == 1
    # a client that sent one request id twice: both requests, each charged
    reused = records_json(admin_server, tenant_id="t1", request_id="req-reused")
    assert [item["prompt_tokens"] for item in reused["items"]] == [8, 7]
    assert len({item["record_id"] for item in reused["items"]}) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"tenant_id": "t1", "request_id": "req-unknown"},
        {"tenant_id": "t1", "request_id": "req-other-tenant"},  # t2's request, under t1
        {"tenant_id": "t1", "request_id": "req-c", "from": DAY_3},  # outside the days
        {"tenant_id": "t9", "request_id": "req-a"},
    ],
)
def test_a_request_not_found_is_404(admin_server: ServerProcess, params: dict[str, str]) -> None:
    response = get_records(admin_server, **params)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == ("record_not_found", "request_id")
    assert params["request_id"] in error["message"]


def test_the_right_tenant_finds_its_request(admin_server: ServerProcess) -> None:
    page = records_json(admin_server, tenant_id="t2", request_id="req-other-tenant")
    assert [(item["tenant_id"], item["status"]) for item in page["items"]] == [("t2", 500)]


def test_pages_follow_next_offset(admin_server: ServerProcess) -> None:
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = records_json(admin_server, tenant_id="t1", limit=4, offset=offset)
        seen += [item["record_id"] for item in page["items"]]
        offset = page["next_offset"]
        pages += 1
    assert pages == 2
    everything = records_json(admin_server, tenant_id="t1")["items"]
    assert seen == [item["record_id"] for item in everything]
    assert records_json(admin_server, tenant_id="t1", limit=6)["next_offset"] is None
    assert records_json(admin_server, tenant_id="t1", offset=10)["items"] == []


def as_record(fields: dict[str, Any]) -> UsageRecord:
    """An exported record read back (the model of a request refused before its model was
    known is null in exports, "" in the store)."""
    return UsageRecord(**{**fields, "model": fields["model"] or ""})


def from_csv_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the JSON object it shows: the types come from the JSON page."""
    types = {
        "time": float,
        "status": int,
        "prompt_tokens": int,
        "cached_tokens": int,
        "completion_tokens": int,
        "latency_ms": float,
        "ttft_ms": float,
    }
    fields: dict[str, Any] = {}
    for name, text in row.items():
        if name in ("stream", "estimated", "aborted"):
            assert text in ("true", "false")
            fields[name] = text == "true"
        elif text == "":
            fields[name] = None
        else:
            fields[name] = types.get(name, str)(text)
    return fields


def test_jsonl_and_csv_exports_round_trip_the_records(admin_server: ServerProcess) -> None:
    pages = records_json(admin_server, tenant_id="t1", limit=2)  # exports ignore the page size
    assert len(pages["items"]) == 2
    records = [as_record(item) for item in records_json(admin_server, tenant_id="t1")["items"]]
    assert len(records) == 6

    jsonl = get_records(admin_server, tenant_id="t1", format="jsonl")
    assert jsonl.status_code == 200, jsonl.text
    assert jsonl.headers["content-type"] == "application/jsonl"
    assert "attachment" in jsonl.headers["content-disposition"]
    assert jsonl.text.endswith("\n")
    lines = jsonl.text.splitlines()
    assert [as_record(orjson.loads(line)) for line in lines] == records

    exported = get_records(admin_server, tenant_id="t1", format="csv")
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.text.startswith(",".join(RECORD_FIELDS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [as_record(from_csv_row(row)) for row in rows] == records
    assert rows[2]["model"] == "" and rows[2]["ttft_ms"] == ""

    window = get_records(
        admin_server, tenant_id="t1", format="csv", offset=1, limit=2, **{"from": DAY_2}
    )
    assert [row["request_id"] for row in csv.DictReader(io.StringIO(window.text))] == [
        "req-reused",
        "req-d",
    ]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "tenant_id"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "t1", "from": "2030-02-30"}, "from"),
        ({"tenant_id": "t1", "to": "tomorrow"}, "to"),
        ({"tenant_id": "t1", "from": DAY_2, "to": DAY_1}, "from"),
        ({"tenant_id": "t1", "format": "xml"}, "format"),
        ({"tenant_id": "t1", "limit": 0}, "limit"),
        ({"tenant_id": "t1", "limit": 1001}, "limit"),
        ({"tenant_id": "t1", "offset": -1}, "offset"),
        ({"tenant_id": "t1", "request_id": ""}, "request_id"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(
    admin_server: ServerProcess, params: dict[str, Any], param: str
) -> None:
    assert_400_naming(get_records(admin_server, **params), param)


@pytest.mark.parametrize("admin_key", [None, "not-the-admin-key"])
def test_needs_an_admin_key(admin_server: ServerProcess, admin_key: str | None) -> None:
    for params in ({"tenant_id": "t1"}, {"tenant_id": "t1", "request_id": "req-a"}, {}):
        response = get_records(admin_server, admin_key, **params)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_openapi_document_describes_the_route(admin_server: ServerProcess) -> None:
    document = httpx.get(admin_server.url + "/admin/v1/openapi.json").json()
    route = document["paths"]["/admin/v1/usage/records"]["get"]
    parameters = {parameter["name"]: parameter for parameter in route["parameters"]}
    assert set(parameters) >= {"tenant_id", "request_id", "from", "to", "format", "limit"}
    assert parameters["tenant_id"]["required"] is True
    content = route["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv", "application/jsonl"}
    assert content["application/json"]["schema"]["$ref"].endswith("/UsageRecordPage")
    assert set(route["responses"]) >= {"200", "400", "401", "404"}


@pytest.fixture
def cli(
    admin_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> CliRun:
    """`cli("--tenant", "t1")` runs `vllm-gateway usage-records ...` against the admin server:
    (exit code, stdout, stderr)."""
    return cli_against(admin_server.url, "usage-records", add_commands, monkeypatch, capsys)


def test_cli_table(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = cli("--tenant", "t1", "--from", DAY_2, "--limit", "3")
    assert code == 0
    header, *rows, more = [line.split() for line in out.splitlines()]
    assert header == [
        "TIME",
        "REQUEST_ID",
        "KEY",
        "ENDPOINT",
        "MODEL",
        "UPSTREAM",
        "STATUS",
        "PROMPT",
        "COMPLETION",
        "LATENCY_MS",
        "TTFT_MS",
        "ESTIMATED",
    ]
    # TIME is two words: day and time of day
    chat = "/v1/chat/completions"
    assert [row[2:] for row in rows] == [
        ["req-reused", "k2", chat, "m1", "base:m1", "200", "8", "4", "10.0", "-", "no"],
        ["req-reused", "k2", chat, "m1", "base:m1", "200", "7", "3", "10.0", "-", "no"],
        ["req-d", "k1", chat, "-", "-", "404", "0", "0", "10.0", "-", "no"],
    ]
    assert rows[2][:2] == [DAY_2, "12:00:04Z"]
    assert more == ["more:", "--offset", "3"]


def test_cli_lookup_json(
    cli: Callable[..., tuple[int, str, str]], admin_server: ServerProcess
) -> None:
    code, out, _ = cli("--tenant", "t1", "--request-id", "req-a", "--json")
    assert code == 0
    assert json.loads(out) == records_json(admin_server, tenant_id="t1", request_id="req-a")


def test_cli_exports_are_the_apis(
    cli: Callable[..., tuple[int, str, str]], admin_server: ServerProcess
) -> None:
    for option, format in (("--csv", "csv"), ("--jsonl", "jsonl")):
        code, out, _ = cli("--tenant", "t1", option)
        assert code == 0
        api_export = get_records(admin_server, tenant_id="t1", format=format).text
        assert out == api_export.replace("\r\n", "\n")
        code, out, _ = cli("--tenant", "t1", option, "--offset", "1", "--limit", "2")
        assert code == 0
        window = get_records(admin_server, tenant_id="t1", format=format, offset=1, limit=2)
        assert out == window.text.replace("\r\n", "\n")
        code, out, _ = cli("--tenant", "t1", option, "--offset", "4")
        assert code == 0
        rest = get_records(admin_server, tenant_id="t1", format=format, offset=4)
        assert out == rest.text.replace("\r\n", "\n")


def test_cli_exports_read_every_page(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.admin.cli.MAX_PAGE", 2)  # three pages for t1's six records
    code, out, _ = cli("--tenant", "t1", "--jsonl")
    assert code == 0
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == (
        T1_REQUESTS_NEWEST_FIRST
    )


def test_cli_errors_exit_1(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = cli("--tenant", "t1", "--request-id", "req-unknown")
    assert (code, out) == (1, "")
    assert "HTTP 404" in err and "req-unknown" in err
    code, out, err = cli("--tenant", "t1", "--from", "2030-02-30", "--csv")
    assert (code, out) == (1, "")
    assert "HTTP 400" in err and "from" in err
    code, _, err = cli("--tenant", "t1", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot reach" in err


def test_every_record_field_is_in_the_responses() -> None:
    """A field added to UsageRecord must be added to the API's model too (exports and pages
    are rendered from it), in the same order."""
    assert list(UsageRecordOut.model_fields) == list(RECORD_FIELDS)
