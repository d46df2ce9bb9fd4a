"""What a client and an operator see while the gateway's Redis is frozen or killed.

The gateway (a real process) keeps keys, limits and usage on a redis-server of this module's
own, so the test may SIGSTOP or SIGKILL it by PID. The chaos suite (tests/chaos) runs the same
faults under load and measures them; these are the behaviours, one by one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.fixtures.redis import OwnRedis

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    with OwnRedis(tmp_path_factory.mktemp("outage-redis"), append_only=True) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    standin: ServerProcess, own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    server = start_gateway(
        standin.url,
        tmp_path_factory.mktemp("outage-gateway"),
        store__redis_url=own_redis.url,
        store__redis_timeout_s="0.2",
        store__call_budget_s="0.5",
        auth__key_hash_secret="outage-test-secret",
        auth__key_cache_ttl_s="0.2",
        server__readyz_requires_stores="true",
    )
    yield server
    server.stop()


def chat(gateway: Gateway, key: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=30)


def new_key(gateway: Gateway) -> str:
    created = gateway.admin("POST", "/keys", json={"tenant_id": gateway.tenant_id, "name": "k"})
    assert created.status_code == 201, created.text
    return str(created.json()["secret"])


def store_log_lines(gateway: Gateway) -> list[str]:
    return [line for line in gateway.server.log().splitlines() if "store" in line]


def assert_store_unavailable(response: httpx.Response, store: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "store_unavailable"
    assert f"{store} store" in error["message"]


@pytest.mark.parametrize("fault", ["frozen", "killed"])
def test_a_redis_outage_is_never_a_500(gateway: Gateway, own_redis: OwnRedis, fault: str) -> None:
    known = gateway.api_key
    assert chat(gateway, known).status_code == 200
    unseen = new_key(gateway)  # created just before the outage, never used
    log_before = len(store_log_lines(gateway))
    # Past the key cache's TTL, so the known key must come from the stale copy; and past
    # Redis's AOF fsync (every second), so the unseen key outlives the SIGKILL.
    time.sleep(1.2)
    with getattr(own_redis, fault)():
        statuses = [chat(gateway, known).status_code for _ in range(10)]
        assert statuses == [200] * 10
        assert_store_unavailable(chat(gateway, unseen), "keys")
        assert_store_unavailable(gateway.admin("GET", "/tenants"), "keys")
        assert_store_unavailable(gateway.admin("GET", "/usage"), "usage")
        assert_store_unavailable(httpx.get(gateway.url + "/readyz"), "keys")
        assert httpx.get(gateway.url + "/healthz").status_code == 200
    deadline = time.monotonic() + 10
    while chat(gateway, unseen).status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not recover"
        time.sleep(0.1)
    assert gateway.admin("GET", "/tenants").status_code == 200
    assert httpx.get(gateway.url + "/readyz").status_code == 200
    outage_lines = store_log_lines(gateway)[log_before:]
    # one line per store when it goes and one when it is back (and the ledger's own pair), not
    # a line or a traceback per request
    for store in ("keys", "adapters", "safety_policies", "usage"):
        went = [line for line in outage_lines if f"the {store} store is unavailable" in line]
        assert len(went) <= 1, went
    assert 2 <= len(outage_lines) <= 12, outage_lines
    assert "Traceback" not in "\n".join(outage_lines)


def test_store_failures_are_metrics(gateway: Gateway) -> None:
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'vllm_gateway_store_failures_total{kind="timeout",store="keys"}' in metrics or (
        'vllm_gateway_store_failures_total{kind="connection",store="keys"}' in metrics
    )
    assert 'vllm_gateway_store_available{store="keys"} 1.0' in metrics
    assert 'vllm_gateway_key_cache_lookups_total{result="stale"}' in metrics
