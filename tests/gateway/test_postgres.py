"""Postgres's own behaviours, beside the contract suites every store runs: versioned migrations
applied by `vllm-gateway db migrate` and checked at start, an unreachable database as
StoreUnavailable within the call budget, and a ledger write that is one transaction."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from pydantic import ValidationError

from gateway.core.errors import StoreUnavailable
from gateway.postgres.database import PostgresDatabase
from gateway.postgres.schema import (
    MIGRATE_COMMAND,
    VERSION_TABLE,
    SchemaOutdated,
    latest_version,
    migrate,
    migrations,
)
from gateway.settings import Settings
from gateway.tenancy.postgres_store import PostgresStore
from gateway.usage.backend import RecordFilter, UsageFilter
from gateway.usage.counts import UsageCounts, UsageKey
from gateway.usage.postgres_backend import PostgresUsageBackend
from tests.fixtures.gateway import ADMIN_KEY
from tests.fixtures.postgres import own_database
from tests.fixtures.processes import PYTHON, REPO_ROOT, ServerProcess, free_port, start_server
from tests.gateway.usage.test_ledger import a_record

SECRET_ENV = {"VLLM_GATEWAY_AUTH__KEY_HASH_SECRET": "a-shared-secret-for-postgres"}


def applied_versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        query = f"SELECT version, name FROM {VERSION_TABLE} ORDER BY version"
        return conn.execute(query.encode()).fetchall()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        timeout=60,
    )


def test_the_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [migration.version for migration in migrations()] == list(range(1, latest_version() + 1))
    assert migrations()[0].name == "0001_initial.sql"


def test_migrate_applies_each_version_once(postgres_server_url: str) -> None:
    with own_database(postgres_server_url, migrated=False) as url:
        assert [migration.version for migration in migrate(url)] == list(
            range(1, latest_version() + 1)
        )
        assert migrate(url) == []
        assert applied_versions(url) == [(m.version, m.name) for m in migrations()]


def test_db_migrate_command(postgres_server_url: str) -> None:
    with own_database(postgres_server_url, migrated=False) as url:
        first = cli("db", "migrate", env={"VLLM_GATEWAY_STORE__POSTGRES_URL": url, **SECRET_ENV})
        assert first.returncode == 0, first.stderr
        assert "applied 0001_initial.sql" in first.stdout
        again = cli("db", "migrate", "--url", url)
        assert again.returncode == 0, again.stderr
        assert "applied" not in again.stdout
        assert f"schema at version {latest_version()}" in again.stdout
    nowhere = cli("db", "migrate")
    assert nowhere.returncode == 1
    assert "store.postgres_url" in nowhere.stderr


async def test_a_store_refuses_to_start_on_a_database_behind_its_migrations(
    postgres_server_url: str,
) -> None:
    with own_database(postgres_server_url, migrated=False) as url:
        store = PostgresStore(PostgresDatabase(url))
        try:
            with pytest.raises(SchemaOutdated, match=f"version 0.*`{MIGRATE_COMMAND}`"):
                await store.start()
        finally:
            await store.close()
        migrate(url)
        store = PostgresStore(PostgresDatabase(url))
        await store.start()
        assert await store.list_tenants() == []
        await store.close()


def test_a_gateway_on_an_unmigrated_database_does_not_start(
    postgres_server_url: str, standin: ServerProcess, tmp_path: Path
) -> None:
    port = free_port()
    with own_database(postgres_server_url, migrated=False) as url:
        env = {"VLLM_GATEWAY_STORE__POSTGRES_URL": url, "VLLM_GATEWAY_ADMIN__KEYS": "[]"}
        argv = [PYTHON, "-m", "gateway.cli", "serve", "--port", str(port)]
        with pytest.raises(RuntimeError) as refused:
            started = start_server(
                [*argv, "--upstream", standin.url],
                port,
                tmp_path / "gateway.log",
                "/healthz",
                {**env, **SECRET_ENV, "VLLM_GATEWAY_STORE__SQLITE_PATH": str(tmp_path / "x.db")},
            )
            started.stop()  # it served: stop it, and fail
    assert "exited" in str(refused.value)
    assert MIGRATE_COMMAND in str(refused.value)


def test_postgres_needs_a_configured_key_hash_secret() -> None:
    with pytest.raises(ValidationError, match="key_hash_secret"):
        Settings(store={"postgres_url": "postgresql://127.0.0.1/gateway"})
    settings = Settings(
        store={"postgres_url": "postgresql://127.0.0.1/gateway"},
        auth={"key_hash_secret": "shared"},
        admin={"keys": [ADMIN_KEY]},
    )
    assert settings.store.postgres_url == "postgresql://127.0.0.1/gateway"


async def test_an_unreachable_database_is_unavailable_within_the_budget() -> None:
    budget_s = 0.5
    store = PostgresStore(PostgresDatabase(f"postgresql://127.0.0.1:{free_port()}/x", budget_s))
    try:
        await store.start()  # logged, not raised: the gateway starts without its store
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await store.get_tenant("t1")
            assert time.monotonic() - started < budget_s + 0.5
            assert "keys store" in caught.value.message
        assert not store.health.available
    finally:
        await store.close()


async def test_a_ledger_write_is_one_transaction(postgres_url: str) -> None:
    """The daily rows locked: the records inserted before them are rolled back with the
    failed write, so the write made again stores and counts every record once."""
    backend = PostgresUsageBackend(PostgresDatabase(postgres_url, 0.3), 0.3)
    records = [a_record("a", 10, 5), a_record("b", 1, 1)]
    try:
        with psycopg.connect(postgres_url) as holder:
            holder.execute("LOCK TABLE usage_daily IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreUnavailable):
                await backend.write(records)
            holder.rollback()
        assert await backend.read_records(RecordFilter("t1")) == []
        await backend.write(records)
        await backend.write(records)
        key = UsageKey("2030-01-01", "t1", "k1", "m1")
        assert dict(await backend.read(UsageFilter())) == {key: UsageCounts(2, 11, 6)}
    finally:
        await backend.close()
