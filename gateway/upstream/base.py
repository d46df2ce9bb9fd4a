"""The transport protocol: how the gateway talks HTTP to a model server, whatever carries it.

As httpx keeps its transports behind `AsyncBaseTransport`, the pipeline, the router and the
replica monitor see only `Transport` and `UpstreamResponse`; aiohttp stays inside
`gateway/upstream/http.py`, and `gateway/upstream/memory.py` answers from Python callables for
fast in-process tests. Every failure reaches callers as a typed `GatewayError`
(`UpstreamUnavailable` when nothing was sent, `UpstreamTimeout`, `UpstreamBadGateway`), never as
a library's exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from gateway.core.errors import GatewayError


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One call to a model server.

    `stream`: the answer is read chunk by chunk, each read bounded by the transport's idle
    timeout. `timeout_s`: one bound for the whole call (control calls); None keeps the
    transport's connect / first-byte / idle timeouts.
    """

    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    timeout_s: float | None = None


class UpstreamResponse(Protocol):
    """A model server's answer, its headers in; the body is read with `read` or `chunks`."""

    status: int
    content_type: str  # the content-type header as sent; application/json where none was

    async def read(self) -> bytes:
        """The whole body."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in the sizes it arrives."""
        ...

    def close(self) -> None:
        """Abort: the connection is dropped, which tells vLLM to stop generating."""

    def release(self) -> None:
        """Done reading: the connection goes back to the pool (or is dropped if unread)."""

    def cut(self, error: GatewayError) -> None:
        """End it from outside (a shutdown's drain time is up): close it, and make the
        pending or next read raise `error`."""


class Transport(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Return once the response headers are in."""
        ...
