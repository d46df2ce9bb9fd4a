"""`vllm-gateway usage`: the usage ledger from a shell, as a table, JSON or CSV.

GET /admin/v1/usage, every page of it, with the conventions of the other admin commands
(--url, --admin-key, their environment variables, errors on stderr with exit code 1). The CSV
is rendered from the API's JSON by the same function the API's CSV comes from.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.admin.cli import (
    _call_for_all_pages,
    _cell,
    _table,
    add_connection_arguments,
)
from gateway.usage.report import (
    COUNTER_COLUMNS,
    DEFAULT_GROUP_BY,
    GROUP_COLUMNS,
    report_columns,
    report_csv,
)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `usage`; its parser sets ``func(args) -> exit code``."""
    usage = subparsers.add_parser(
        "usage", help="requests, tokens, errors and rejections per day, tenant, key and model"
    )
    add_connection_arguments(usage)
    usage.add_argument("--tenant", dest="tenant_id", help="only this tenant id")
    usage.add_argument("--key", dest="key_id", help="only this API key id")
    usage.add_argument("--model", help="only this public model name")
    usage.add_argument("--from", dest="first_day", metavar="YYYY-MM-DD", help="first UTC day")
    usage.add_argument("--to", dest="last_day", metavar="YYYY-MM-DD", help="last UTC day")
    usage.add_argument(
        "--group-by",
        default=DEFAULT_GROUP_BY,
        help=f"comma list of {', '.join(GROUP_COLUMNS)} (default: {DEFAULT_GROUP_BY}); '' "
        "for totals only",
    )
    output = usage.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the API's JSON")
    output.add_argument("--csv", action="store_true", help="print CSV with a header row")
    usage.set_defaults(func=_usage)


def _usage(args: argparse.Namespace) -> int:
    params = {
        "tenant_id": args.tenant_id,
        "key_id": args.key_id,
        "model": args.model,
        "from": args.first_day,
        "to": args.last_day,
        "group_by": args.group_by,
    }
    given = {name: value for name, value in params.items() if value is not None}
    render = _csv if args.csv else _usage_table
    return _call_for_all_pages(args, "/usage", render, given, "rows")


def _csv(report: dict[str, Any]) -> str:
    return report_csv(report, line_end="\n").rstrip("\n")


def _usage_table(report: dict[str, Any]) -> str:
    """The rows, then a `total` row when there is more than one group."""
    columns = report_columns(report)
    rows = [[_cell(row[column]) for column in columns] for row in report["rows"]]
    group_count = len(report["group_by"])
    if group_count:
        totals = report["totals"]
        labels = ["total"] + [""] * (group_count - 1)
        rows.append(labels + [str(totals[column]) for column in COUNTER_COLUMNS])
    return _table([column.upper() for column in columns], rows)
