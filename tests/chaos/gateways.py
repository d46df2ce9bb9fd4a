"""Gateways for the chaos scenarios (started by tests/fixtures/gateway.py's `start_gateway`),
and what they wrote to their log."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from tests.fixtures.gateway import Gateway, start_gateway

# Limits on every tenant, far above what the scenarios send: every request runs the limiter.
GENEROUS_LIMITS = {
    "limits__defaults__requests_per_minute": "1000000",
    "limits__defaults__tokens_per_minute": "1000000000",
}


def gateway_on_redis(
    upstream_url: str, redis_url: str, log_dir: Path, prefix: str | None = None, **settings: str
) -> Gateway:
    """A gateway whose keys, limits and ledger live in the Redis at `redis_url`, under a
    key prefix of its own unless `prefix` names one (that other gateways share)."""
    return start_gateway(
        upstream_url,
        log_dir,
        store__redis_url=redis_url,
        store__redis_prefix=prefix or f"chaos-{uuid.uuid4().hex[:8]}:",
        auth__key_hash_secret="chaos-key-hash-secret",
        **GENEROUS_LIMITS,
        **settings,
    )


def log_size(gateway: Gateway) -> int:
    return gateway.server.log_path.stat().st_size


def log_lines_since(gateway: Gateway, offset: int) -> list[str]:
    """The gateway's log lines from byte `offset` on, without its access log (one JSON line
    per request, written whatever happens): what it logged about its own troubles."""
    with gateway.server.log_path.open("rb") as log_file:
        log_file.seek(offset)
        lines = log_file.read().decode(errors="replace").splitlines()
    return [line for line in lines if line.strip() and not _is_access_log(line)]


def _is_access_log(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(entry, dict) and entry.get("event") == "request"
