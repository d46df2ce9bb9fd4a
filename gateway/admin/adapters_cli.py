"""`vllm-gateway adapters ...`: the adapter registry from a shell, over the admin API.

Same conventions as `tenants` and `keys` (gateway/admin/cli.py): a table for people or the
API's JSON with ``--json``, options not given are not sent, ``none`` clears a value.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.admin.cli import (
    _add_page_options,
    _call,
    _cell,
    _group,
    _nullable,
    _page_params,
    _page_table,
    _record,
    add_connection_arguments,
)

UPDATABLE = ("path", "base_model", "tenant_id", "rank")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `adapters list|get|register|update|delete`."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(common)
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    commands = _group(subparsers, "adapters", "manage the LoRA adapter registry")
    listing = commands.add_parser(
        "list", parents=[common], help="adapters by name, a page at a time"
    )
    listing.add_argument("--tenant", help="only this tenant's adapters")
    _add_page_options(listing)
    listing.set_defaults(func=_list)
    register = commands.add_parser(
        "register", parents=[common], help="an adapter the gateway may load into vLLM"
    )
    register.add_argument("name", help="the model name vLLM serves it under")
    register.add_argument("--path", required=True, help="its directory on the vLLM host")
    register.add_argument("--base-model", required=True, help="the base model it adapts")
    register.add_argument("--tenant", dest="tenant_id", help="owning tenant id (default: shared)")
    register.add_argument("--rank", type=int, help="the LoRA rank")
    register.set_defaults(func=_register)
    update = commands.add_parser("update", parents=[common], help="change given fields only")
    update.add_argument("name")
    update.add_argument("--path", default=argparse.SUPPRESS)
    update.add_argument("--base-model", default=argparse.SUPPRESS)
    update.add_argument(
        "--tenant",
        dest="tenant_id",
        type=_nullable(str),
        default=argparse.SUPPRESS,
        help="owning tenant id, or 'none' to share it",
    )
    update.add_argument("--rank", type=_nullable(int), default=argparse.SUPPRESS)
    update.set_defaults(func=_update)
    for name, func, help in (
        ("get", _get, "one adapter"),
        ("delete", _delete, "deregister it (refused while a tenant maps a model to it)"),
    ):
        command = commands.add_parser(name, parents=[common], help=help)
        command.add_argument("name")
        command.set_defaults(func=func)


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = _page_params(args)
    if args.tenant:
        params["tenant_id"] = args.tenant
    return _call(args, "GET", "/adapters", _adapter_table, params=params)


def _register(args: argparse.Namespace) -> int:
    body = {field: getattr(args, field) for field in ("name", *UPDATABLE)}
    return _call(args, "POST", "/adapters", _record, body)


def _get(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/adapters/{args.name}", _record)


def _update(args: argparse.Namespace) -> int:
    body = {field: getattr(args, field) for field in UPDATABLE if hasattr(args, field)}
    return _call(args, "PATCH", f"/adapters/{args.name}", _record, body)


def _delete(args: argparse.Namespace) -> int:
    return _call(args, "DELETE", f"/adapters/{args.name}", lambda _: f"deleted {args.name}")


def _adapter_table(data: dict[str, Any]) -> str:
    rows = [
        [a["name"], a["base_model"], _cell(a["tenant_id"]), _cell(a["rank"]), a["path"]]
        for a in data["items"]
    ]
    return _page_table(data, ["NAME", "BASE", "TENANT", "RANK", "PATH"], rows)
