"""The Postgres schema's versions: ordered SQL files, a version table, and the check at start.

Each file in `migrations/` is one version, ``NNNN_what.sql``, applied once and in order by
`vllm-gateway db migrate` (`migrate`), each in a transaction of its own together with its row
in ``schema_migrations``, so a failed migration leaves the schema at the version before it. An
advisory lock keeps two migrators (two deploy jobs, two replicas' init containers) from
applying the same file at once. A file, once released, never changes: a later change to the
schema is a new file.

The gateway never migrates by itself: at start it reads the version (`require_current`) and
refuses to serve a database behind its own migrations, naming the command. A database ahead
of it (a newer release migrated it during a rolling upgrade) is served: migrations only add.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

VERSION_TABLE = "schema_migrations"
MIGRATE_COMMAND = "vllm-gateway db migrate"
# pg_advisory_lock's key for the migrators: any constant that nothing else of ours takes.
MIGRATION_LOCK = 7_460_221_318
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_CREATE_VERSION_TABLE = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
).format(sql.Identifier(VERSION_TABLE))
_READ_VERSION = sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(
    sql.Identifier(VERSION_TABLE)
)
_RECORD_VERSION = sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
    sql.Identifier(VERSION_TABLE)
)


class SchemaOutdated(RuntimeError):
    """The database is behind this gateway's migrations: it must be migrated before serving."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: str


def migrations() -> list[Migration]:
    """The migrations this release ships, by version; ValueError if two share a number or one
    is missing (a gap would hide a file left out of a release)."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must run 1, 2, 3 ... without gaps: {versions}")
    return found


def latest_version() -> int:
    return len(migrations())


def migrate(url: str) -> list[Migration]:
    """Apply the migrations the database at `url` lacks; those applied, oldest first."""
    applied = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_CREATE_VERSION_TABLE)
        current = _version(conn.execute(_READ_VERSION).fetchone())
        for migration in migrations():
            if migration.version <= current:
                continue
            with conn.transaction():
                conn.execute(migration.statements.encode())
                conn.execute(_RECORD_VERSION, (migration.version, migration.name))
            applied.append(migration)
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


async def require_current(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Raise SchemaOutdated, naming the command, unless the database is at this release's
    latest version or past it."""
    try:
        version = _version(await (await conn.execute(_READ_VERSION)).fetchone())
    except psycopg.errors.UndefinedTable:
        version = 0
    latest = latest_version()
    if version < latest:
        raise SchemaOutdated(
            f"the Postgres database is at schema version {version}, this gateway needs "
            f"{latest}: run `{MIGRATE_COMMAND}` (with the same store.postgres_url) first"
        )


def _version(row: tuple[object, ...] | None) -> int:
    assert row is not None and isinstance(row[0], int)
    return row[0]
