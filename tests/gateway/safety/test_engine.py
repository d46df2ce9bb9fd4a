"""The engine: which policy a request is under, stored policies (SQLite, Postgres, Redis)
replacing configured ones, reloads announced on the tenancy store, and the audit trail of
decisions."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from gateway.core.errors import GatewayError
from gateway.postgres.database import PostgresDatabase
from gateway.safety.engine import SafetyEngine
from gateway.safety.policy import PolicySpec, SafetySettings
from gateway.safety.policy_store import (
    PolicyStore,
    PostgresPolicyStore,
    RedisPolicyStore,
    SqlitePolicyStore,
)
from gateway.tenancy.auth import Principal
from gateway.tenancy.models import ApiKey, Tenant
from gateway.tenancy.sqlite_store import SqliteStore
from tests.fixtures.processes import free_port
from tests.fixtures.redis import delete_prefixed_keys
from tests.gateway.safety.helpers import chat_prompt

CARDS = PolicySpec.model_validate({"rules": [{"name": "cards", "detector": "payment_card"}]})
MAILS = PolicySpec.model_validate(
    {"rules": [{"name": "mails", "detector": "email", "action": "redact"}]}
)
EMPTY = PolicySpec()


def principal(tenant_policy: str | None = None, key_policy: str | None = None) -> Principal:
    tenant = Tenant(id="tenant_1", name="acme", safety_policy=tenant_policy)
    metadata = {"safety_policy": key_policy} if key_policy is not None else {}
    key = ApiKey(
        id="key_1",
        tenant_id="tenant_1",
        name="k",
        prefix="sk-x",
        secret_hash="h",
        metadata=metadata,
    )
    return Principal.of(key, tenant)


@pytest_asyncio.fixture(params=["sqlite", "postgres", "redis"], loop_scope="function")
async def policies(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PolicyStore]:
    if request.param == "sqlite":
        store: PolicyStore = SqlitePolicyStore(tmp_path / "gateway.db")
        yield store
        await store.close()
    elif request.param == "postgres":
        store = PostgresPolicyStore(PostgresDatabase(request.getfixturevalue("postgres_url")))
        yield store
        await store.close()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test-{uuid.uuid4().hex}:"
        store = RedisPolicyStore(url, prefix)
        yield store
        await store.close()
        await delete_prefixed_keys(url, prefix)


@pytest_asyncio.fixture(loop_scope="function")
async def tenancy(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "gateway.db")
    yield store
    await store.close()


async def test_policy_store_round_trip(policies: PolicyStore) -> None:
    assert await policies.load_all() == []
    stored, created = await policies.put("b-mails", MAILS)
    assert created and stored.spec == MAILS
    _, created_again = await policies.put("b-mails", CARDS)
    assert not created_again
    await policies.put("a-cards", CARDS)
    assert [(p.name, p.spec) for p in await policies.load_all()] == [
        ("a-cards", CARDS),
        ("b-mails", CARDS),
    ]
    assert (await policies.get("a-cards")).spec == CARDS
    assert await policies.delete("a-cards") is True
    assert await policies.delete("a-cards") is False
    assert await policies.get("a-cards") is None


def test_the_key_overrides_the_tenant_which_overrides_the_default(
    tenancy: SqliteStore, tmp_path: Path
) -> None:
    settings = SafetySettings(
        policies={"cards": CARDS, "mails": MAILS, "empty": EMPTY}, default_policy="cards"
    )
    engine = SafetyEngine(settings, SqlitePolicyStore(tmp_path / "gateway.db"), tenancy)
    assert engine.for_request(None).policy.name == "cards"
    assert engine.for_request(principal()).policy.name == "cards"
    assert engine.for_request(principal("mails")).policy.name == "mails"
    assert engine.for_request(principal("mails", key_policy="cards")).policy.name == "cards"
    assert engine.for_request(principal("mails", key_policy="none")) is None
    assert engine.for_request(principal("empty")) is None
    runtime = engine.for_request(principal("mails"))
    assert (runtime.tenant_id, runtime.key_id) == ("tenant_1", "key_1")


def test_no_policy_anywhere_costs_nothing(tenancy: SqliteStore, tmp_path: Path) -> None:
    engine = SafetyEngine(SafetySettings(), SqlitePolicyStore(tmp_path / "gateway.db"), tenancy)
    assert engine.for_request(principal()) is None
    assert engine.for_request(None) is None


async def test_an_undefined_policy_fails_closed(tenancy: SqliteStore, tmp_path: Path) -> None:
    engine = SafetyEngine(SafetySettings(), SqlitePolicyStore(tmp_path / "gateway.db"), tenancy)
    await engine.start()
    with pytest.raises(GatewayError) as caught:
        engine.for_request(principal("ghost"))
    assert (caught.value.status, caught.value.code) == (500, "safety_policy_missing")
    assert "ghost" in caught.value.message


async def test_stored_policies_replace_configured_ones_and_reload_on_invalidation(
    tenancy: SqliteStore, tmp_path: Path
) -> None:
    policies = SqlitePolicyStore(tmp_path / "gateway.db")
    engine = SafetyEngine(SafetySettings(policies={"pii": CARDS}), policies, tenancy)
    await engine.start()
    background = asyncio.create_task(engine.run_background())
    try:
        await asyncio.sleep(0.05)  # the listener is subscribed
        rules = engine.for_request(principal("pii")).policy.output_rules.rules
        assert [rule.name for rule in rules] == ["cards"]
        await policies.put("pii", MAILS)
        await tenancy.publish_invalidation()
        rules = engine.for_request(principal("pii")).policy.output_rules.rules
        assert [rule.name for rule in rules] == ["mails"]
        await policies.delete("pii")
        await tenancy.publish_invalidation()
        assert engine.policy_names == ["pii"]
        assert [
            rule.name for rule in engine.for_request(principal("pii")).policy.output_rules.rules
        ] == ["cards"]
    finally:
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
        await engine.close()


async def test_an_unreachable_store_does_not_stop_the_gateway(tenancy: SqliteStore) -> None:
    unreachable = RedisPolicyStore(f"redis://127.0.0.1:{free_port()}", "test:", timeout_s=0.2)
    engine = SafetyEngine(SafetySettings(policies={"cards": CARDS}), unreachable, tenancy)
    await engine.start()
    assert engine.for_request(principal("cards")) is not None
    with pytest.raises(GatewayError) as caught:
        engine.for_request(principal("stored-only"))  # maybe stored: not an undefined one
    error = caught.value
    assert (error.status, error.code) == (503, "store_unavailable")
    assert "safety_policies" in error.message and error.headers["retry-after"]
    await engine.close()


async def test_a_periodic_reload_catches_a_change_nobody_announced(
    tenancy: SqliteStore, tmp_path: Path
) -> None:
    policies = SqlitePolicyStore(tmp_path / "gateway.db")
    engine = SafetyEngine(SafetySettings(), policies, tenancy)
    await engine.start()
    background = asyncio.create_task(engine.run_background(refresh_s=0.05))
    try:
        await policies.put("late", MAILS)  # no publish_invalidation
        for _ in range(100):
            if "late" in engine.policy_names:
                break
            await asyncio.sleep(0.02)
        assert engine.for_request(principal("late")) is not None
    finally:
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
        await engine.close()


async def test_decisions_are_audited_per_tenant_without_content(
    tenancy: SqliteStore, tmp_path: Path
) -> None:
    engine = SafetyEngine(
        SafetySettings(policies={"cards": CARDS}),
        SqlitePolicyStore(tmp_path / "gateway.db"),
        tenancy,
    )
    runtime = engine.for_request(principal("cards"))
    with pytest.raises(GatewayError):
        await runtime.check_input(chat_prompt(("user", "pay with 4111 1111 1111 1111")))
    await engine.close()
    entries = await tenancy.list_audit(target_id="tenant_1")
    assert [(entry.action, entry.admin_key_id, entry.target_type) for entry in entries] == [
        ("safety.block", "key_1", "tenant")
    ]
    assert entries[0].change == {
        "key_id": "key_1",
        "policy": "cards",
        "rule": "cards",
        "detector": "payment_card",
        "direction": "input",
        "action": "block",
    }
    assert "4111" not in orjson.dumps(entries[0].change).decode()
    assert engine.events.counts == {
        ("tenant_1", "cards", "cards", "payment_card", "input", "block"): 1
    }


def test_hooks_see_every_event(tenancy: SqliteStore, tmp_path: Path) -> None:
    engine = SafetyEngine(
        SafetySettings(policies={"mails": MAILS}),
        SqlitePolicyStore(tmp_path / "gateway.db"),
        tenancy,
    )
    seen = []
    engine.events.subscribe(seen.append)
    guard = engine.for_request(principal("mails")).output_guard()
    guard.on_whole(
        orjson.dumps({"choices": [{"index": 0, "text": "a@b.com", "finish_reason": "stop"}]})
    )
    assert [(event.rule, event.direction, event.action) for event in seen] == [
        ("mails", "output", "redact")
    ]
