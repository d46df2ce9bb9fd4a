"""Stored safety policies: one that no longer validates does not keep the others from loading."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import psycopg

from gateway.postgres.database import PostgresDatabase
from gateway.safety.policy import PolicySpec
from gateway.safety.policy_store import PostgresPolicyStore, SqlitePolicyStore

CARDS = PolicySpec.model_validate({"rules": [{"name": "cards", "detector": "payment_card"}]})
# Valid for Python's re, refused by RE2 (a lookbehind): stored before policies ran on RE2.
OLD_REGEX = {
    "rules": [
        {
            "name": "old",
            "detector": "deny_regex",
            "patterns": ["(?<!x)secret"],
        }
    ]
}


async def test_a_policy_stored_under_older_rules_is_skipped(tmp_path: Path) -> None:
    store = SqlitePolicyStore(tmp_path / "gateway.db")
    await store.put("cards", CARDS)
    document = orjson.dumps({"spec": OLD_REGEX, "updated_at": time.time()}).decode()
    with store._file.transaction() as db:
        db.execute(
            "INSERT INTO safety_policies (name, updated_at, doc) VALUES (?, ?, ?)",
            ("legacy", time.time(), document),
        )
    assert [policy.name for policy in await store.load_all()] == ["cards"]
    await store.close()


async def test_a_postgres_policy_stored_under_older_rules_is_skipped(postgres_url: str) -> None:
    store = PostgresPolicyStore(PostgresDatabase(postgres_url))
    await store.put("cards", CARDS)
    document = orjson.dumps({"spec": OLD_REGEX, "updated_at": time.time()}).decode()
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "INSERT INTO safety_policies (name, updated_at, doc) VALUES (%s, %s, %s::jsonb)",
            ("legacy", time.time(), document),
        )
    assert [policy.name for policy in await store.load_all()] == ["cards"]
    await store.close()
