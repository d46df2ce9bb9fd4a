"""Per-request state that the pipeline stages share."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from gateway.core.asgi import Headers, Scope, header

_MAX_CLIENT_REQUEST_ID = 128
# the request this task is serving: for what reports on it from deep inside a stage (the
# safety engine's events), without passing the context through every call
current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def random_id() -> str:
    """32 random hex digits, as unique as `uuid.uuid4().hex` at a quarter of its cost (no UUID
    object): ids minted on every request."""
    return os.urandom(16).hex()


@dataclass(slots=True)
class RequestContext:
    """What one request has learned so far; stages add to it, the response headers read it."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0
    endpoint: str = ""
    surface: str = ""  # the API surface's name (e.g. chat.completions, responses, messages)
    stream: bool = False
    client_wants_usage: bool = False
    # who and what, once authenticated and routed (labels for metrics, logs and the ledger)
    tenant_id: str | None = None
    tenant_name: str | None = None
    key_id: str | None = None
    public_model: str | None = None
    upstream_model: str | None = None  # what vLLM is asked for: the adapter, else the base
    base_model: str | None = None
    adapter: str | None = None
    replica: str | None = None
    # what happened
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None  # as the answer gave it (stop, length, tool_calls, ...)
    safety_action: str | None = None  # the strongest one taken, as "direction:action"
    streamed_events: int = 0
    first_event_at: float | None = None
    status: int = 0
    extra_headers: Headers = field(default_factory=list)
    # the overhead as reported in the response headers: for a stream, up to its first byte
    reported_overhead_ms: float | None = None
    # a background run that goes on after the client's answer: the request ends with it
    detached: asyncio.Future[None] | None = None
    # called as the upstream call is about to be made (the ledger logs the request in flight)
    upstream_starting: Callable[[], None] | None = None
    # tracing (gateway/observability/tracing.py): the trace a sampled request is recorded in
    # (logged, and the exemplar on the latency histograms), and the W3C traceparent (and
    # tracestate) sent to vLLM
    trace_id: str | None = None
    trace_headers: dict[str, str] | None = None

    @classmethod
    def from_scope(cls, scope: Scope) -> RequestContext:
        """Keep the client's x-request-id when it is sane, so traces join across systems."""
        given = header(scope, b"x-request-id")
        if given and len(given) <= _MAX_CLIENT_REQUEST_ID and given.isascii():
            return cls(given.decode())
        return cls(random_id())

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far, not counting the wait for the upstream."""
        return (time.perf_counter() - self.started - self.upstream_seconds) * 1000.0

    def final_overhead_ms(self) -> float:
        """For metrics and logs: the figure the client was sent in its headers, if any."""
        if self.reported_overhead_ms is not None:
            return self.reported_overhead_ms
        return self.overhead_ms()

    def response_headers(self) -> Headers:
        """Headers every response carries; stages add theirs (rate limits) to extra_headers."""
        self.reported_overhead_ms = self.overhead_ms()
        return [
            (b"x-request-id", self.request_id.encode()),
            (b"x-gateway-overhead-ms", f"{self.reported_overhead_ms:.3f}".encode()),
            *self.extra_headers,
        ]
