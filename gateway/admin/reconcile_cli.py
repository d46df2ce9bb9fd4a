"""`vllm-gateway reconcile`: the shared limiter's token budgets against the usage ledger.

Unlike the commands that drive the admin API, this one reads the stores itself, with the
gateway's settings (its environment variables, or --config), as `vllm-gateway db migrate`
does: the counters are in the limiter's Redis, which the admin API is not given. It prints a
row per counter (gateway/usage/reconcile.py says which are compared) with both counts and
their difference, a table for people or JSON with ``--json``.

Exit code: 0 when every counter is within the tolerance, 2 when one is not, 1 when the stores
cannot be read (the error on stderr). Without Redis the limiter is in-process, each gateway
process counting on its own in memory: there is nothing shared to reconcile (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from gateway.admin.cli import _cell, _table
from gateway.core.errors import StoreUnavailable
from gateway.limits.counters import BudgetCounters
from gateway.settings import CONFIG_ENV_VAR, Settings, load_settings
from gateway.stores import open_stores
from gateway.tenancy.models import Limits
from gateway.usage.reconcile import Comparison, Tolerance, reconcile

DRIFT_EXIT = 2
FAILURE_EXIT = 1
NOTHING_SHARED = (
    "no store.redis_url: the rate limiter is in-process, each gateway process counting on its "
    "own in memory; there is nothing shared to reconcile."
)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `reconcile`; its parser sets ``func(args) -> exit code``."""
    today = datetime.now(UTC).date().isoformat()
    command = subparsers.add_parser(
        "reconcile",
        help="compare the rate limiter's token budgets in Redis with the usage ledger",
    )
    command.add_argument("--config", type=Path, help=f"YAML settings file (or ${CONFIG_ENV_VAR})")
    command.add_argument(
        "--from",
        dest="first_day",
        metavar="YYYY-MM-DD",
        default=today,
        help="first UTC day (default: today)",
    )
    command.add_argument(
        "--to", dest="last_day", metavar="YYYY-MM-DD", help="last UTC day (default: --from)"
    )
    command.add_argument("--tenant", dest="tenant_id", help="only this tenant and its keys")
    command.add_argument(
        "--tolerance",
        type=_tolerance,
        default=Tolerance(),
        metavar="TOKENS|PERCENT%",
        help="the difference allowed per counter: tokens (e.g. 100), or a percentage of the "
        "ledger's tokens (e.g. 0.5%%); default 0",
    )
    command.add_argument("--json", action="store_true", help="print JSON")
    command.set_defaults(func=_reconcile)


def _tolerance(text: str) -> Tolerance:
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100
            if fraction >= 0:
                return Tolerance(fraction=fraction)
        elif int(text) >= 0:
            return Tolerance(tokens=int(text))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected tokens (100) or a percentage (0.5%), got {text!r}")


def _reconcile(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not settings.store.redis_url:
        print(NOTHING_SHARED)
        return 0
    last_day = args.last_day or args.first_day
    try:
        comparisons = asyncio.run(_compare(settings, args.first_day, last_day, args.tenant_id))
    except (StoreUnavailable, RedisError, OSError, LookupError, ValueError) as error:
        print(f"error: cannot reconcile: {error}", file=sys.stderr)
        return FAILURE_EXIT
    tolerance: Tolerance = args.tolerance
    drifting = [c for c in comparisons if tolerance.exceeded_by(c)]
    if args.json:
        print(json.dumps(_report(args.first_day, last_day, tolerance, comparisons), indent=2))
    else:
        print(_comparison_table(comparisons, tolerance))
    return DRIFT_EXIT if drifting else 0


async def _compare(
    settings: Settings, first_day: str, last_day: str, tenant_id: str | None
) -> list[Comparison]:
    store = settings.store
    assert store.redis_url is not None
    stores = open_stores(store)
    counters = BudgetCounters(store.redis_url, store.redis_prefix, store.redis_timeout_s)
    defaults = Limits(**settings.limits.defaults.model_dump())
    try:
        return await reconcile(
            stores.keys, stores.usage, counters, defaults, first_day, last_day, tenant_id
        )
    finally:
        await counters.close()
        # each store lets go of the file or pool they share; the last one closes it
        for opened in (stores.keys, stores.adapters, stores.safety_policies, stores.usage):
            await opened.close()
        if stores.responses is not None:
            await stores.responses.close()


def _report(
    first_day: str, last_day: str, tolerance: Tolerance, comparisons: list[Comparison]
) -> dict[str, Any]:
    return {
        "from": first_day,
        "to": last_day,
        "tolerance": {"tokens": tolerance.tokens, "fraction": tolerance.fraction},
        "comparisons": [
            {
                "period": c.period,
                "tenant_id": c.tenant_id,
                "key_id": c.key_id,
                "limiter": c.limiter,
                "ledger": c.ledger,
                "difference": c.difference,
                "drift": tolerance.exceeded_by(c),
            }
            for c in comparisons
        ],
        "drifting": sum(tolerance.exceeded_by(c) for c in comparisons),
    }


def _comparison_table(comparisons: list[Comparison], tolerance: Tolerance) -> str:
    """A row per counter (KEY `*`: the tenant's, all its keys), then a summary line."""
    rows = [
        [
            c.period,
            c.tenant_id,
            c.key_id or "*",
            _cell(c.limiter),
            str(c.ledger),
            "-" if c.difference is None else f"{c.difference:+d}",
            _status(c, tolerance),
        ]
        for c in comparisons
    ]
    headers = ["PERIOD", "TENANT", "KEY", "LIMITER", "LEDGER", "DIFFERENCE", "STATUS"]
    compared = [c for c in comparisons if c.limiter is not None]
    drifting = sum(tolerance.exceeded_by(c) for c in compared)
    summary = (
        f"{len(compared)} counters compared, {drifting} beyond the tolerance"
        if comparisons
        else "no token budgets to compare (only scopes with a daily or monthly budget count)"
    )
    return (_table(headers, rows) + "\n" if rows else "") + summary


def _status(comparison: Comparison, tolerance: Tolerance) -> str:
    if comparison.limiter is None:
        return "expired"
    return "DRIFT" if tolerance.exceeded_by(comparison) else "ok"
