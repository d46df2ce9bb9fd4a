"""A Postgres database of a run's own on a given server, migrated by the gateway's own
`migrate` and dropped afterwards. Here, not in tests/fixtures (which re-exports it), because the
benchmarks run without tests/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from gateway.postgres.schema import migrate


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (a postgresql:// URL)."""
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def create_database(server_url: str, *, migrated: bool = True) -> str:
    """A new database on the server, by default migrated; its URL."""
    name = f"vgw_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(server_url, name)
    if migrated:
        migrate(url)
    return url


def drop_database(url: str) -> None:
    server_url = database_url(url, "postgres")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def own_database(server_url: str, *, migrated: bool = True) -> Iterator[str]:
    """A database of the block's own on the server (by default migrated), dropped when the
    block ends."""
    url = create_database(server_url, migrated=migrated)
    try:
        yield url
    finally:
        drop_database(url)
