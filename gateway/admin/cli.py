"""`vllm-gateway tenants|keys|audit ...`: the admin API from a shell, over HTTP.

Each command is one admin API call. Output is an aligned table for people, or the API's JSON
with ``--json`` for scripts. Options of an update that are not given are not sent, so they
stay as they are; ``none`` (``never`` for an expiry) clears a value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import DEFAULT_PAGE, MAX_PAGE

URL_ENV = "VLLM_GATEWAY_URL"
ADMIN_KEY_ENV = "VLLM_GATEWAY_ADMIN_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
LIMIT_OPTIONS = {
    "--rpm": "requests_per_minute",
    "--tpm": "tokens_per_minute",
    "--max-concurrent": "max_concurrent",
    "--tokens-per-day": "tokens_per_day",
    "--tokens-per-month": "tokens_per_month",
}
BRIEF_CHARS = 100
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Render = Callable[[Any], str]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """`--url` and `--admin-key`, as every admin command takes them."""
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the gateway's base URL (${URL_ENV}, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--admin-key", default=os.environ.get(ADMIN_KEY_ENV), help=f"(${ADMIN_KEY_ENV})"
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tenants`, `keys` and `audit`; each leaf parser sets ``func(args) -> exit code``."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(common)
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    _add_tenant_commands(_group(subparsers, "tenants", "manage tenants"), common)
    _add_key_commands(_group(subparsers, "keys", "manage API keys"), common)
    audit = _group(subparsers, "audit", "read the audit trail")
    listing = audit.add_parser("list", parents=[common], help="newest first")
    listing.add_argument("--target", help="only entries about this tenant or key id")
    listing.add_argument("--action", help="only this action, e.g. key.revoke")
    listing.add_argument("--since", type=float, help="only entries at or after (unix seconds)")
    _add_page_options(listing)
    listing.set_defaults(func=_audit_list)


def _group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> Any:
    return subparsers.add_parser(name, help=help).add_subparsers(dest="subcommand", required=True)


def _add_page_options(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--offset", type=int, default=0, help="records to skip")
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_PAGE, help=f"records to show (at most {MAX_PAGE})"
    )


def _page_params(args: argparse.Namespace) -> dict[str, int]:
    return {"offset": args.offset, "limit": args.limit}


def _add_tenant_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser("list", parents=[common], help="tenants, a page at a time")
    _add_page_options(listing)
    listing.set_defaults(func=_tenants_list)
    create = commands.add_parser("create", parents=[common], help="a new tenant")
    create.add_argument("name")
    _add_tenant_options(create)
    create.set_defaults(func=_tenants_create)
    update = commands.add_parser("update", parents=[common], help="change given fields only")
    update.add_argument("id")
    update.add_argument("--name", default=argparse.SUPPRESS)
    _add_tenant_options(update)
    update.set_defaults(func=_tenants_update)
    for name, func, help in (
        ("get", _tenants_get, "one tenant"),
        ("disable", _tenants_disable, "its keys stop working"),
        ("enable", _tenants_enable, "its keys work again"),
        ("delete", _tenants_delete, "delete it and revoke its keys"),
    ):
        command = commands.add_parser(name, parents=[common], help=help)
        command.add_argument("id")
        command.set_defaults(func=func)


def _add_tenant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=_model_route,
        default=argparse.SUPPRESS,
        metavar="PUBLIC=BASE[:ADAPTER]",
        help="a model the tenant may call (repeat; on update, replaces all)",
    )
    parser.add_argument(
        "--default-model", type=_nullable(str), default=argparse.SUPPRESS, help="one of --model"
    )
    parser.add_argument("--safety-policy", type=_nullable(str), default=argparse.SUPPRESS)
    _add_limit_and_metadata_options(parser)


def _add_key_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser("list", parents=[common], help="keys, a page at a time")
    listing.add_argument("--tenant", help="only this tenant's keys")
    _add_page_options(listing)
    listing.set_defaults(func=_keys_list)
    create = commands.add_parser("create", parents=[common], help="prints the secret once")
    create.add_argument("--tenant", required=True, help="tenant id")
    create.add_argument("--name", required=True)
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=_duration, default=argparse.SUPPRESS, help="e.g. 30d")
    expiry.add_argument("--expires-at", type=float, default=argparse.SUPPRESS, help="unix seconds")
    _add_allowed_models_option(create)
    _add_limit_and_metadata_options(create)
    create.set_defaults(func=_keys_create)
    update = commands.add_parser("update", parents=[common], help="change given fields only")
    update.add_argument("id")
    update.add_argument("--name", default=argparse.SUPPRESS)
    update.add_argument(
        "--expires-at",
        type=_nullable(float, "never"),
        default=argparse.SUPPRESS,
        help="unix seconds, or 'never'",
    )
    allowed = _add_allowed_models_option(update)
    allowed.add_argument(
        "--all-models",
        dest="allowed_models",
        action="store_const",
        const=None,
        default=argparse.SUPPRESS,
        help="allow every model of the tenant",
    )
    _add_limit_and_metadata_options(update)
    update.set_defaults(func=_keys_update)
    rotate = commands.add_parser("rotate", parents=[common], help="prints the new secret once")
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace", type=_duration, default=0.0, help="how long the old secret still works (1h)"
    )
    rotate.set_defaults(func=_keys_rotate)
    for name, func, help in (("get", _keys_get, "one key"), ("revoke", _keys_revoke, "for good")):
        command = commands.add_parser(name, parents=[common], help=help)
        command.add_argument("id")
        command.set_defaults(func=func)


def _add_allowed_models_option(parser: argparse.ArgumentParser) -> Any:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--allow-model",
        dest="allowed_models",
        action="append",
        default=argparse.SUPPRESS,
        metavar="MODEL",
        help="a public model name of the tenant (repeat); default: all of them",
    )
    return group


def _add_limit_and_metadata_options(parser: argparse.ArgumentParser) -> None:
    for option, field in LIMIT_OPTIONS.items():
        parser.add_argument(
            option,
            dest=field,
            type=_nullable(int),
            default=argparse.SUPPRESS,
            metavar="N",
            help=f"{field} ('none': not limited)",
        )
    parser.add_argument(
        "--meta",
        dest="metadata",
        action="append",
        type=_pair,
        default=argparse.SUPPRESS,
        metavar="KEY=VALUE",
        help="metadata (repeat; on update, replaces all)",
    )


def _model_route(text: str) -> tuple[str, dict[str, str]]:
    public, _, target = text.partition("=")
    base, _, adapter = target.partition(":")
    if not public or not base:
        raise argparse.ArgumentTypeError(f"expected PUBLIC=BASE[:ADAPTER], got {text!r}")
    return public, {"base_model": base, **({"adapter": adapter} if adapter else {})}


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key or not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _duration(text: str) -> float:
    """Seconds, or a number with a unit: 90s, 15m, 12h, 30d."""
    scale = _DURATION_UNITS.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _DURATION_UNITS else text
    try:
        return float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError("expected a duration like 3600, 90m or 30d") from None


def _nullable(convert: Callable[[str], Any], null_word: str = "none") -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text == null_word else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its error messages
    return parse


def _given(args: argparse.Namespace, *fields: str) -> dict[str, Any]:
    """The fields given on the command line, as the API's JSON expects them."""
    body: dict[str, Any] = {}
    for field in fields:
        if hasattr(args, field):
            value = getattr(args, field)
            body[field] = dict(value) if field in ("models", "metadata") else value
    limits = {
        field: getattr(args, field) for field in LIMIT_OPTIONS.values() if hasattr(args, field)
    }
    if limits:
        body["limits"] = limits
    return body


def _tenants_list(args: argparse.Namespace) -> int:
    return _call(args, "GET", "/tenants", _tenant_table, params=_page_params(args))


def _tenants_create(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        **_given(args, "models", "default_model", "safety_policy", "metadata"),
    }
    return _call(args, "POST", "/tenants", _record, body)


def _tenants_get(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/tenants/{args.id}", _record)


def _tenants_update(args: argparse.Namespace) -> int:
    fields = ("name", "models", "default_model", "safety_policy", "metadata")
    return _call(args, "PATCH", f"/tenants/{args.id}", _record, _given(args, *fields))


def _tenants_disable(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/tenants/{args.id}/disable", _record)


def _tenants_enable(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/tenants/{args.id}/enable", _record)


def _tenants_delete(args: argparse.Namespace) -> int:
    return _call(args, "DELETE", f"/tenants/{args.id}", lambda _: f"deleted tenant {args.id}")


def _keys_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = _page_params(args)
    if args.tenant is not None:
        params["tenant_id"] = args.tenant
    return _call(args, "GET", "/keys", _key_page, params=params)


def _keys_create(args: argparse.Namespace) -> int:
    fields = ("name", "expires_at", "allowed_models", "metadata")
    body = {"tenant_id": args.tenant, **_given(args, *fields)}
    if hasattr(args, "expires_in"):
        body["expires_in_s"] = args.expires_in
    return _call(args, "POST", "/keys", _record_with_secret, body)


def _keys_get(args: argparse.Namespace) -> int:
    return _call(args, "GET", f"/keys/{args.id}", _record)


def _keys_update(args: argparse.Namespace) -> int:
    body = _given(args, "name", "expires_at", "allowed_models", "metadata")
    return _call(args, "PATCH", f"/keys/{args.id}", _record, body)


def _keys_revoke(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/keys/{args.id}/revoke", _record)


def _keys_rotate(args: argparse.Namespace) -> int:
    body = {"grace_period_s": args.grace}
    return _call(args, "POST", f"/keys/{args.id}/rotate", _record_with_secret, body)


def _audit_list(args: argparse.Namespace) -> int:
    params = {"target_id": args.target, "action": args.action, "since": args.since}
    params = {name: value for name, value in params.items() if value is not None}
    return _call(args, "GET", "/audit", _audit_table, params={**params, **_page_params(args)})


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    render: Render,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> int:
    """One API call; prints the answer (table or JSON), or the error on stderr with exit 1."""
    data = _request(args, method, path, body, params)
    if data is None:
        return 1
    print(json.dumps(data, indent=2) if args.json else render(data))
    return 0


def _call_for_all_pages(
    args: argparse.Namespace, path: str, render: Render, params: dict[str, Any], field: str
) -> int:
    """`_call` for a GET that pages its list `field`: reads every page and prints them as one
    answer, the first page's with the other pages' records added."""
    answer = _request(args, "GET", path, params={**params, "offset": 0, "limit": MAX_PAGE})
    if answer is None:
        return 1
    while answer["next_offset"] is not None:
        page_params = {**params, "offset": answer["next_offset"], "limit": MAX_PAGE}
        page = _request(args, "GET", path, params=page_params)
        if page is None:
            return 1
        answer[field] += page[field]
        answer["next_offset"] = page["next_offset"]
    print(json.dumps(answer, indent=2) if args.json else render(answer))
    return 0


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """The API's JSON answer, or None after printing the error on stderr."""
    headers = {"authorization": f"Bearer {args.admin_key}"} if args.admin_key else {}
    url = args.url.rstrip("/") + ADMIN_PREFIX + path
    try:
        response = httpx.request(method, url, json=body, params=params, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
        return None
    if response.is_error:
        print(f"error: {_error_message(response)} (HTTP {response.status_code})", file=sys.stderr)
        return None
    return response.json()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip() or response.reason_phrase


def _tenant_table(data: dict[str, Any]) -> str:
    rows = [
        [t["id"], t["name"], _cell(t["enabled"]), _cell(t["default_model"]), _models(t["models"])]
        for t in data["items"]
    ]
    return _page_table(data, ["ID", "NAME", "ENABLED", "DEFAULT", "MODELS"], rows)


def _key_page(data: dict[str, Any]) -> str:
    rows = [
        [
            k["id"],
            k["tenant_id"],
            k["name"],
            k["prefix"],
            k["status"],
            _when(k["expires_at"]),
            _when(k["last_used_at"]),
        ]
        for k in data["items"]
    ]
    headers = ["ID", "TENANT", "NAME", "PREFIX", "STATUS", "EXPIRES", "LAST_USED"]
    return _page_table(data, headers, rows)


def _audit_table(data: dict[str, Any]) -> str:
    rows = [
        [
            _when(e["at"]),
            e["admin_key_id"],
            e["action"],
            f"{e['target_type']} {e['target_id']}",
            _brief(e["change"]),
        ]
        for e in data["items"]
    ]
    return _page_table(data, ["AT", "ADMIN", "ACTION", "TARGET", "CHANGE"], rows)


def _brief(change: dict[str, Any]) -> str:
    """A change as compact JSON without its empty values, cut to fit a table row."""
    text = json.dumps(_without_empty(change), separators=(",", ":"))
    return text if len(text) <= BRIEF_CHARS else text[: BRIEF_CHARS - 1] + "…"


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {key: _without_empty(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in (None, {}, [])}
    return value


def _record(data: dict[str, Any]) -> str:
    """One tenant or key as FIELD VALUE lines."""
    rows = []
    for field, value in data.items():
        if field == "models":
            shown = _models(value)
        elif field.endswith(("_at", "_until")):
            shown = _when(value)
        else:
            shown = _cell(value)
        rows.append([field, shown])
    return _table(["FIELD", "VALUE"], rows)


def _record_with_secret(data: dict[str, Any]) -> str:
    print("Store the secret now: it is not shown again.", file=sys.stderr)
    return _record({"secret": data["secret"], **data})


def _page_table(page: dict[str, Any], headers: list[str], rows: list[list[str]]) -> str:
    """A page's table, and under it how to ask for the next page if there is one."""
    table = _table(headers, rows)
    if page["next_offset"] is not None:
        table += f"\nmore: --offset {page['next_offset']}"
    return table


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        given = {key: item for key, item in value.items() if item is not None}
        return ", ".join(f"{key}={item}" for key, item in given.items()) or "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _models(models: dict[str, dict[str, str | None]]) -> str:
    routes = (
        f"{public}={route['base_model']}" + (f":{route['adapter']}" if route["adapter"] else "")
        for public, route in models.items()
    )
    return ", ".join(routes) or "-"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
