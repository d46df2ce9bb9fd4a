"""`vllm-gateway usage-records`: a tenant's requests, record by record, from a shell.

GET /admin/v1/usage/records with the conventions of `vllm-gateway usage` (--url, --admin-key,
their environment variables, errors on stderr with exit code 1): a table of a page of records
(newest first) for people, or the API's JSON with ``--json``; ``--csv`` and ``--jsonl`` export
every record of the period (all pages) unless ``--limit`` is given, rendered from the API's
JSON by the functions its own CSV and JSON lines come from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway.admin.cli import (
    _call,
    _call_for_all_pages,
    _cell,
    _page_table,
    _when,
    add_connection_arguments,
)
from gateway.admin.schemas import MAX_PAGE
from gateway.usage.export import fields_csv, fields_jsonl

TABLE_COLUMNS: dict[str, Callable[[dict[str, Any]], str]] = {
    "TIME": lambda record: _when(record["time"]),
    "REQUEST_ID": lambda record: record["request_id"],
    "KEY": lambda record: record["key_id"],
    "ENDPOINT": lambda record: record["endpoint"],
    "MODEL": lambda record: _cell(record["model"]),
    "UPSTREAM": lambda record: _cell(record["upstream_model"]),
    "STATUS": lambda record: str(record["status"]),
    "PROMPT": lambda record: str(record["prompt_tokens"]),
    "COMPLETION": lambda record: str(record["completion_tokens"]),
    "LATENCY_MS": lambda record: _milliseconds(record["latency_ms"]),
    "TTFT_MS": lambda record: _milliseconds(record["ttft_ms"]),
    "ESTIMATED": lambda record: _cell(record["estimated"]),
}


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `usage-records`; its parser sets ``func(args) -> exit code``."""
    records = subparsers.add_parser(
        "usage-records",
        help="a tenant's usage records: one request by its id, or a period as CSV or JSON lines",
    )
    add_connection_arguments(records)
    records.add_argument("--tenant", dest="tenant_id", required=True, help="the tenant id")
    records.add_argument("--request-id", help="only this request's record (the x-request-id)")
    records.add_argument("--from", dest="first_day", metavar="YYYY-MM-DD", help="first UTC day")
    records.add_argument("--to", dest="last_day", metavar="YYYY-MM-DD", help="last UTC day")
    records.add_argument("--offset", type=int, default=0, help="records to skip")
    records.add_argument(
        "--limit",
        type=int,
        help=f"records to show (at most {MAX_PAGE}); default: a page of 100 for the table and "
        "--json, every record for --csv and --jsonl",
    )
    output = records.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the API's JSON page")
    output.add_argument("--csv", action="store_true", help="print CSV with a header row")
    output.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    records.set_defaults(func=_usage_records)


def _usage_records(args: argparse.Namespace) -> int:
    params = {
        "tenant_id": args.tenant_id,
        "request_id": args.request_id,
        "from": args.first_day,
        "to": args.last_day,
        "offset": args.offset,
        "limit": args.limit,
    }
    given = {name: value for name, value in params.items() if value is not None}
    if args.csv or args.jsonl:
        render = _csv if args.csv else _jsonl
        if args.limit is None:  # every record from --offset on, as the API's export has them
            del given["offset"]
            skipped = args.offset

            def rest(page: dict[str, Any]) -> str:
                return render({**page, "items": page["items"][skipped:]})

            return _call_for_all_pages(args, "/usage/records", rest, given, "items")
        return _call(args, "GET", "/usage/records", render, params=given)
    return _call(args, "GET", "/usage/records", _records_table, params=given)


def _csv(page: dict[str, Any]) -> str:
    return fields_csv(page["items"], line_end="\n").rstrip("\n")


def _jsonl(page: dict[str, Any]) -> str:
    return fields_jsonl(page["items"]).decode().rstrip("\n")


def _records_table(page: dict[str, Any]) -> str:
    rows = [[cell(record) for cell in TABLE_COLUMNS.values()] for record in page["items"]]
    return _page_table(page, list(TABLE_COLUMNS), rows)


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
