"""The Redis ledger on every topology: one server, Sentinel and a Cluster (where its keys
share the `{usage}` slot), records stored once and read back as rows and records."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from gateway.redis_client import parse_redis_url
from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.counts import UsageKey
from gateway.usage.redis_backend import RedisUsageBackend
from tests.fixtures.redis import delete_prefixed_keys
from tests.fixtures.redis_topologies import TOPOLOGIES, topology_url
from tests.gateway.usage.conftest import DAY_1
from tests.gateway.usage.test_ledger import a_record


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_records_are_stored_once_and_read_back(
    request: pytest.FixtureRequest, topology: str
) -> None:
    url = topology_url(request, topology)
    prefix = f"test-{uuid.uuid4().hex}:"
    backend = RedisUsageBackend(url, prefix)
    records = [a_record(f"r{n}", 10, n) for n in range(450)]  # three script batches
    other_tenant = replace(a_record("x1", 1, 1), tenant_id="t2")
    try:
        await backend.write([*records, other_tenant])
        await backend.write(records[:50])  # a retried flush changes nothing
        rows = dict(await backend.read(UsageFilter()))
        stored = await backend.read_records(RecordFilter("t1", DAY_1, DAY_1))
    finally:
        await backend.close()
        await delete_prefixed_keys(url, prefix)
    counts = rows[UsageKey(DAY_1, "t1", "k1", "m1")]
    assert (counts.requests, counts.prompt_tokens) == (450, 4500)
    assert counts.completion_tokens == sum(range(450))
    assert rows[UsageKey(DAY_1, "t2", "k1", "m1")].requests == 1
    assert sorted(r.record_id for r in stored) == sorted(r.record_id for r in records)
    if parse_redis_url(url).is_cluster:
        assert backend._prefix == prefix + "{usage}:"
