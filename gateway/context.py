"""Per-request state that the pipeline stages share."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.asgi import Headers, Scope, header

_MAX_CLIENT_REQUEST_ID = 128


@dataclass(slots=True)
class RequestContext:
    """What one request has learned so far; stages add to it, the response headers read it."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0
    endpoint: str = ""
    stream: bool = False
    client_wants_usage: bool = False
    usage: dict[str, Any] | None = None
    status: int = 0

    @classmethod
    def from_scope(cls, scope: Scope) -> RequestContext:
        """Keep the client's x-request-id when it is sane, so traces join across systems."""
        given = header(scope, b"x-request-id")
        if given and len(given) <= _MAX_CLIENT_REQUEST_ID and given.isascii():
            return cls(given.decode())
        return cls(uuid.uuid4().hex)

    def overhead_ms(self) -> float:
        """Time spent in the gateway so far, not counting the wait for the upstream."""
        return (time.perf_counter() - self.started - self.upstream_seconds) * 1000.0

    def response_headers(self) -> Headers:
        return [
            (b"x-request-id", self.request_id.encode()),
            (b"x-gateway-overhead-ms", f"{self.overhead_ms():.3f}".encode()),
        ]
