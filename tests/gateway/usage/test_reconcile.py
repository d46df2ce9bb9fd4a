"""`vllm-gateway reconcile` after real traffic through a gateway on the Redis at 127.0.0.1:6379
(under a prefix of this module's own): the limiter's budget counters agree with the ledger and
with what the clients were shown; a counter changed in Redis, or lost, is reported as drift
with both numbers; a counter gone with its month is not compared; without Redis there is
nothing to reconcile."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from bench.redis_server import delete_prefixed_keys
from gateway.cli import main
from gateway.limits.counters import BudgetCounters, day_field, month_field
from gateway.usage.records import UsageRecord
from gateway.usage.redis_backend import RedisUsageBackend
from tests.fixtures.gateway import ACME_MODELS, Gateway, start_gateway
from tests.fixtures.processes import ServerProcess

WAIT_S = 15.0
BIG = 10**12  # a budget no test reaches


@dataclass
class Traffic:
    gateway: Gateway
    prefix: str
    today: str
    tenant_id: str  # a daily budget; keys: `plain_key` (none of its own), `budget_key` (both)
    plain_key: str
    budget_key: str
    refused_key: str  # a daily budget of 1 token of its own: every request refused, nothing charged
    monthly_tenant_id: str  # a monthly budget only: its day counters hold estimates
    monthly_key: str
    seen: Counter[str]  # key id -> total tokens the clients were shown


def create(gateway: Gateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = gateway.admin("POST", path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def new_key(gateway: Gateway, tenant_id: str, **limits: int) -> tuple[str, str]:
    key = create(gateway, "/keys", {"tenant_id": tenant_id, "name": "k", "limits": limits})
    return key["id"], key["secret"]


def send(gateway: Gateway, secret: str, stream: bool) -> httpx.Response:
    body: dict[str, Any] = {
        "model": "base",
        "messages": [{"role": "user", "content": f"count {uuid.uuid4().hex}"}],
        "max_tokens": 9,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"authorization": f"Bearer {secret}"}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def total_tokens_seen(response: httpx.Response) -> int:
    if response.headers["content-type"].startswith("application/json"):
        return int(response.json()["usage"]["total_tokens"])
    events = [e[6:] for e in response.content.split(b"\n\n") if e.startswith(b"data: {")]
    (usage,) = [chunk["usage"] for chunk in map(orjson.loads, events) if chunk.get("usage")]
    return int(usage["total_tokens"])


@pytest.fixture(scope="module")
def traffic(
    standin: ServerProcess, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traffic]:
    prefix = f"test-{uuid.uuid4().hex}:"
    gateway = start_gateway(
        standin.url,
        tmp_path_factory.mktemp("reconcile"),
        store__redis_url=redis_url,
        store__redis_prefix=prefix,
        auth__key_hash_secret="a-secret-for-the-reconcile-tests",
        # a busy machine: keep Redis answers inside the timeout, so that the gateway never
        # falls back to its in-process limiter (which would be drift)
        limits__redis_timeout_s="0.5",
    )
    try:
        yield _send_traffic(gateway, prefix)
    finally:
        gateway.stop()
        asyncio.run(delete_prefixed_keys(redis_url, prefix))


def _send_traffic(gateway: Gateway, prefix: str) -> Traffic:
    tenant = create(
        gateway,
        "/tenants",
        {"name": "budgeted", "models": ACME_MODELS, "limits": {"tokens_per_day": BIG}},
    )
    monthly = create(
        gateway,
        "/tenants",
        {"name": "monthly", "models": ACME_MODELS, "limits": {"tokens_per_month": BIG}},
    )
    plain_key, plain_secret = new_key(gateway, tenant["id"])
    budget_key, budget_secret = new_key(
        gateway, tenant["id"], tokens_per_day=BIG, tokens_per_month=BIG
    )
    refused_key, refused_secret = new_key(gateway, tenant["id"], tokens_per_day=1)
    monthly_key, monthly_secret = new_key(gateway, monthly["id"])
    today = datetime.now(UTC).date().isoformat()
    seen: Counter[str] = Counter()
    for key_id, secret in (
        (plain_key, plain_secret),
        (budget_key, budget_secret),
        (monthly_key, monthly_secret),
    ):
        for number in range(6):
            response = send(gateway, secret, stream=number % 2 == 1)
            assert response.status_code == 200, response.text
            seen[key_id] += total_tokens_seen(response)
    for stream in (False, True):
        refused = send(gateway, refused_secret, stream)
        assert refused.status_code == 429, refused.text
    return Traffic(
        gateway,
        prefix,
        today,
        tenant["id"],
        plain_key,
        budget_key,
        refused_key,
        monthly["id"],
        monthly_key,
        seen,
    )


@pytest.fixture
def reconcile(
    traffic: Traffic,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str, str]]:
    """`reconcile("--json")` runs `vllm-gateway reconcile` on the gateway's stores, after the
    gateway's ledger has stored its requests: (exit code, stdout, stderr)."""
    monkeypatch.setenv("VLLM_GATEWAY_STORE__REDIS_URL", redis_url)
    monkeypatch.setenv("VLLM_GATEWAY_STORE__REDIS_PREFIX", traffic.prefix)
    monkeypatch.delenv("VLLM_GATEWAY_CONFIG", raising=False)
    flushed = traffic.gateway.admin("GET", "/usage", params={"group_by": ""})  # flushes it
    assert flushed.status_code == 200, flushed.text

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["reconcile", "--from", traffic.today, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def comparisons(run: Callable[..., tuple[int, str, str]], *argv: str) -> tuple[int, dict]:
    """The JSON report once the limiter's settlements are in (they follow the answers by a few
    ms), keyed by (period, tenant, key)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        code, out, err = run("--json", *argv)
        assert code in (0, 2), err
        report = json.loads(out)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    rows = {(c["period"], c["tenant_id"], c["key_id"]): c for c in report["comparisons"]}
    return code, rows


def test_no_drift_after_real_traffic(
    traffic: Traffic, reconcile: Callable[..., tuple[int, str, str]]
) -> None:
    code, rows = comparisons(reconcile, "--tenant", traffic.tenant_id)
    assert code == 0
    today, month, tenant = traffic.today, traffic.today[:7], traffic.tenant_id
    tenant_tokens = traffic.seen[traffic.plain_key] + traffic.seen[traffic.budget_key]
    budget_tokens = traffic.seen[traffic.budget_key]
    assert tenant_tokens > budget_tokens > 0
    # the tenant's daily budget; the budget key's daily and monthly ones; the refused key's
    # daily one (nothing charged, nothing recorded); the plain key has none of its own
    assert set(rows) == {
        (today, tenant, None),
        (today, tenant, traffic.budget_key),
        (month, tenant, traffic.budget_key),
        (today, tenant, traffic.refused_key),
    }
    for key, tokens in (
        ((today, tenant, None), tenant_tokens),
        ((today, tenant, traffic.budget_key), budget_tokens),
        ((month, tenant, traffic.budget_key), budget_tokens),
        ((today, tenant, traffic.refused_key), 0),
    ):
        assert rows[key] == {
            "period": key[0],
            "tenant_id": tenant,
            "key_id": key[2],
            "limiter": tokens,
            "ledger": tokens,
            "difference": 0,
            "drift": False,
        }


def test_a_monthly_budget_is_compared_by_month(
    traffic: Traffic, reconcile: Callable[..., tuple[int, str, str]]
) -> None:
    code, rows = comparisons(reconcile, "--tenant", traffic.monthly_tenant_id)
    assert code == 0
    tokens = traffic.seen[traffic.monthly_key]
    (row,) = rows.values()
    assert (row["period"], row["key_id"]) == (traffic.today[:7], None)
    assert (row["limiter"], row["ledger"], row["difference"]) == (tokens, tokens, 0)


def test_the_table(traffic: Traffic, reconcile: Callable[..., tuple[int, str, str]]) -> None:
    comparisons(reconcile)  # settled
    code, out, _ = reconcile("--tenant", traffic.tenant_id)
    assert code == 0
    header, *rows, summary = out.splitlines()
    assert header.split() == [
        "PERIOD",
        "TENANT",
        "KEY",
        "LIMITER",
        "LEDGER",
        "DIFFERENCE",
        "STATUS",
    ]
    tenant_tokens = traffic.seen[traffic.plain_key] + traffic.seen[traffic.budget_key]
    tenant_row = [traffic.today, traffic.tenant_id, "*", str(tenant_tokens), str(tenant_tokens)]
    assert [*tenant_row, "+0", "ok"] in [row.split() for row in rows]
    assert summary == "4 counters compared, 0 beyond the tolerance"


def hash_key(traffic: Traffic, redis_url: str, scope_id: str) -> str:
    return BudgetCounters(redis_url, traffic.prefix, 1.0).hash_key(traffic.tenant_id, scope_id)


def test_a_changed_counter_is_drift(
    traffic: Traffic, redis_url: str, reconcile: Callable[..., tuple[int, str, str]]
) -> None:
    comparisons(reconcile)  # settled
    client = redis.Redis.from_url(redis_url)
    key_hash = hash_key(traffic, redis_url, f"k:{traffic.budget_key}")
    tenant_hash = hash_key(traffic, redis_url, f"t:{traffic.tenant_id}")
    budget_tokens = traffic.seen[traffic.budget_key]
    tenant_tokens = budget_tokens + traffic.seen[traffic.plain_key]
    client.hincrby(key_hash, day_field(traffic.today), 7)
    client.hincrby(tenant_hash, day_field(traffic.today), -3)
    try:
        code, out, err = reconcile("--json", "--tenant", traffic.tenant_id)
        assert code == 2, err
        rows = {(c["period"], c["key_id"]): c for c in json.loads(out)["comparisons"]}
        key_row = rows[traffic.today, traffic.budget_key]
        assert (key_row["limiter"], key_row["ledger"]) == (budget_tokens + 7, budget_tokens)
        assert (key_row["difference"], key_row["drift"]) == (7, True)
        tenant_row = rows[traffic.today, None]
        assert (tenant_row["limiter"], tenant_row["ledger"]) == (tenant_tokens - 3, tenant_tokens)
        assert (tenant_row["difference"], tenant_row["drift"]) == (-3, True)
        month_row = rows[traffic.today[:7], traffic.budget_key]
        assert (month_row["difference"], month_row["drift"]) == (0, False)
        assert json.loads(out)["drifting"] == 2

        code, out, _ = reconcile("--tenant", traffic.tenant_id)
        assert code == 2
        shown = [line.split() for line in out.splitlines()]
        assert [
            traffic.today,
            traffic.tenant_id,
            traffic.budget_key,
            str(budget_tokens + 7),
            str(budget_tokens),
            "+7",
            "DRIFT",
        ] in shown
        assert shown[-1] == ["4", "counters", "compared,", "2", "beyond", "the", "tolerance"]

        assert reconcile("--tenant", traffic.tenant_id, "--tolerance", "7")[0] == 0
        assert reconcile("--tenant", traffic.tenant_id, "--tolerance", "6")[0] == 2
        percent = f"{100 * 7.5 / budget_tokens}%"  # 7.5 of the key's tokens
        assert reconcile("--tenant", traffic.tenant_id, "--tolerance", percent)[0] == 0
    finally:
        client.hincrby(key_hash, day_field(traffic.today), -7)
        client.hincrby(tenant_hash, day_field(traffic.today), 3)
        client.close()
    assert reconcile("--tenant", traffic.tenant_id)[0] == 0


def test_a_lost_counter_is_drift(
    traffic: Traffic, redis_url: str, reconcile: Callable[..., tuple[int, str, str]]
) -> None:
    comparisons(reconcile)  # settled
    client = redis.Redis.from_url(redis_url)
    key_hash = hash_key(traffic, redis_url, f"k:{traffic.budget_key}")
    field = month_field(traffic.today[:7])
    kept = client.hget(key_hash, field)
    assert kept is not None
    client.hdel(key_hash, field)
    try:
        code, out, _ = reconcile("--json", "--tenant", traffic.tenant_id)
        assert code == 2
        rows = {(c["period"], c["key_id"]): c for c in json.loads(out)["comparisons"]}
        tokens = traffic.seen[traffic.budget_key]
        row = rows[traffic.today[:7], traffic.budget_key]
        assert (row["limiter"], row["ledger"], row["difference"]) == (0, tokens, -tokens)
    finally:
        client.hset(key_hash, field, kept)
        client.close()


def test_counters_gone_with_their_month_are_not_compared(
    traffic: Traffic, redis_url: str, reconcile: Callable[..., tuple[int, str, str]]
) -> None:
    """A day of a long past month in the ledger: its counters expired a day after the month."""
    day = "2020-02-10"
    old = UsageRecord(
        f"old-{uuid.uuid4().hex}",
        "old-request",
        datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp(),
        traffic.tenant_id,
        traffic.budget_key,
        "/v1/chat/completions",
        "base",
        "base",
        None,
        False,
        200,
        40,
        0,
        2,
        5.0,
        None,
        False,
        False,
    )

    async def store() -> None:
        backend = RedisUsageBackend(redis_url, traffic.prefix)
        await backend.write([old])
        await backend.close()

    asyncio.run(store())
    code, out, _ = reconcile("--json", "--tenant", traffic.tenant_id, "--from", day, "--to", day)
    assert code == 0
    rows = {(c["period"], c["key_id"]): c for c in json.loads(out)["comparisons"]}
    assert rows[day, traffic.budget_key] == {
        "period": day,
        "tenant_id": traffic.tenant_id,
        "key_id": traffic.budget_key,
        "limiter": None,
        "ledger": 42,
        "difference": None,
        "drift": False,
    }
    code, out, _ = reconcile("--tenant", traffic.tenant_id, "--from", day, "--to", day)
    assert code == 0
    assert [day, traffic.tenant_id, traffic.budget_key, "-", "42", "-", "expired"] in [
        line.split() for line in out.splitlines()
    ]


def test_bad_arguments_exit_1(
    traffic: Traffic, reconcile: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, err = reconcile("--tenant", "tenant_nobody")
    assert (code, out) == (1, "")
    assert "tenant_nobody" in err
    code, out, err = reconcile("--to", "2020-01-01")
    assert (code, out) == (1, "")
    assert "after" in err
    with pytest.raises(SystemExit):
        reconcile("--tolerance", "some")


def test_without_redis_there_is_nothing_to_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VLLM_GATEWAY_STORE__REDIS_URL", raising=False)
    monkeypatch.delenv("VLLM_GATEWAY_CONFIG", raising=False)
    monkeypatch.setenv("VLLM_GATEWAY_STORE__SQLITE_PATH", str(tmp_path / "gateway.db"))
    assert main(["reconcile"]) == 0
    out = capsys.readouterr().out
    assert "in-process" in out and "nothing shared to reconcile" in out
