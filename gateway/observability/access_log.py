"""One JSON line per finished request on stdout: who, what, where it went, how it went.

Lines are written with one os.write each, so the lines of several uvicorn workers sharing one
stdout never interleave (a write under PIPE_BUF bytes is atomic) and nothing sits in a buffer
when a container stops. No line carries a key's secret, a header or a prompt: the key is
named by its id, and prompts appear only with the debug setting `log_prompts`, as a line of
their own that the request id joins to the access line.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.core.context import RequestContext
from gateway.settings import ObservabilitySettings

STDOUT = 1
_PROMPT_FIELDS = ("messages", "prompt", "input")


@dataclass(slots=True)
class _Config:
    enabled: bool = True
    log_prompts: bool = False
    fd: int = STDOUT


_config = _Config()


def configure(settings: ObservabilitySettings, fd: int = STDOUT) -> None:
    """Apply the settings once per process, before the first request."""
    _config.enabled = settings.access_log
    _config.log_prompts = settings.access_log and settings.log_prompts
    _config.fd = fd


def log_request(ctx: RequestContext, seconds: float) -> None:
    """Write the request's access line; `seconds`: arrival to last byte."""
    if not _config.enabled:
        return
    usage = ctx.usage or {}
    ttft = ctx.first_event_at - ctx.started if ctx.first_event_at is not None else None
    _write(
        {
            "ts": _timestamp(),
            "event": "request",
            "request_id": ctx.request_id,
            "trace_id": ctx.trace_id,
            "endpoint": ctx.endpoint,
            "tenant": ctx.tenant_name,
            "tenant_id": ctx.tenant_id,
            "key_id": ctx.key_id,
            "model": ctx.public_model,
            "upstream_model": ctx.upstream_model,
            "replica": ctx.replica,
            "status": ctx.status,
            "stream": ctx.stream,
            "latency_ms": round(seconds * 1000.0, 3),
            "ttft_ms": round(ttft * 1000.0, 3) if ttft is not None else None,
            "overhead_ms": round(ctx.final_overhead_ms(), 3),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }
    )


def log_prompt(ctx: RequestContext, body: dict[str, Any]) -> None:
    """Debug only (`log_prompts`): the prompt fields as sent upstream (after the safety policy
    masked or redacted them), joined by request id."""
    if not _config.log_prompts:
        return
    entry: dict[str, object] = {"ts": _timestamp(), "event": "prompt", "request_id": ctx.request_id}
    entry.update((name, body[name]) for name in _PROMPT_FIELDS if name in body)
    _write(entry)


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _write(entry: dict[str, object]) -> None:
    # a closed or full log pipe must not fail the request it describes
    with contextlib.suppress(OSError):
        os.write(_config.fd, orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
