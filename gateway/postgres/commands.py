"""`vllm-gateway db migrate`: bring the Postgres database to this release's schema.

Run once per release before the gateways start (docker compose's `migrate` service, the
Kubernetes Job in deploy/k8s): a gateway refuses a database behind its migrations. Safe to run
again, and from several places at once (`gateway.postgres.schema`).
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from gateway.postgres.schema import latest_version, migrate
from gateway.settings import load_settings

URL_ENV = "VLLM_GATEWAY_STORE__POSTGRES_URL"


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `db migrate`; its parser sets ``func(args) -> exit code``."""
    database = subparsers.add_parser("db", help="the Postgres database's schema")
    commands = database.add_subparsers(dest="db_command", required=True)
    migrate_parser = commands.add_parser("migrate", help="apply the migrations it lacks")
    migrate_parser.add_argument(
        "--url", help=f"postgresql:// URL; default: store.postgres_url (${URL_ENV})"
    )
    migrate_parser.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    url = args.url or load_settings().store.postgres_url
    if not url:
        print(f"no database: pass --url or set store.postgres_url (${URL_ENV})", file=sys.stderr)
        return 1
    try:
        applied = migrate(url)
    except psycopg.Error as error:
        print(f"migration failed: {error}", file=sys.stderr)
        return 1
    for migration in applied:
        print(f"applied {migration.name}")
    print(f"schema at version {latest_version()}")
    return 0
