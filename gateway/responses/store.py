"""Stored responses: what the store keeps per response and the operations on it.

A stored response is the response object as the client received it (the public model name,
the gateway's id), the whole input it answered (a continued conversation's earlier turns
included: what `input_items` lists and what the next turn continues), and, for a background
response, the events of its stream, so that `GET ?stream=true` can replay them.

Ids are the gateway's (`resp_` and 32 hex digits, sent to vLLM as `request_id`), and every
lookup is by tenant and id: another tenant's id is not found, as an unknown one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.core.errors import StoreUnavailable
from gateway.store_health import StoreHealth

RUNNING = frozenset({"queued", "in_progress"})
PRUNE_INTERVAL_S = 60.0
PRUNE_BATCH = 500


def new_response_id() -> str:
    return f"resp_{secrets.token_hex(16)}"


@dataclass(slots=True)
class StoredResponse:
    tenant_id: str
    response: dict[str, Any]  # the response object the client saw (or will see)
    input_items: list[dict[str, Any]]  # the conversation so far, as input items
    expires_at: float  # Unix seconds
    # background responses: when their runner last said it is alive
    heartbeat_at: float | None = None

    @property
    def id(self) -> str:
        response_id: str = self.response["id"]
        return response_id

    @property
    def status(self) -> str:
        status: str = self.response.get("status") or "completed"
        return status

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    def output_as_input(self) -> list[dict[str, Any]]:
        """The response's output items, as the next turn's input continues them."""
        output = self.response.get("output")
        return list(output) if isinstance(output, list) else []

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "response": self.response,
                "input": self.input_items,
                "expires_at": self.expires_at,
                "heartbeat_at": self.heartbeat_at,
            }
        )

    @classmethod
    def load(cls, tenant_id: str, document: bytes | str) -> StoredResponse:
        fields = orjson.loads(document)
        return cls(
            tenant_id,
            fields["response"],
            fields["input"],
            fields["expires_at"],
            fields.get("heartbeat_at"),
        )


class ResponseStore(Protocol):
    """Where stored responses live (the embedded SQLite file, or Redis). Every method may
    raise `StoreUnavailable` (gateway/store_health.py)."""

    health: StoreHealth

    async def put(self, record: StoredResponse) -> None:
        """Store `record`, replacing one with its id."""

    async def put_if_running(self, record: StoredResponse) -> bool:
        """Store `record` only if the stored one is still queued or in progress (a background
        response's progress, its end, or its cancellation): False if it is not, or gone."""

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        """The tenant's response, None when unknown, another tenant's, or expired."""

    async def delete(self, tenant_id: str, response_id: str) -> bool:
        """False when there was none to delete."""

    async def append_events(self, record: StoredResponse, events: bytes) -> None:
        """More of a background response's stream (whole SSE events), kept as long as it."""

    async def events(self, tenant_id: str, response_id: str) -> bytes:
        """The stream so far, as appended."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


async def prune_expired(prune: Callable[[float], Awaitable[int]]) -> None:
    """A store's background loop: every `PRUNE_INTERVAL_S`, `prune(now)` (one batch of
    expired responses deleted; how many) until a batch comes back short. Batches, with
    requests let in between them, so that no transaction holds a lock for long; an
    unavailable store is logged by its health and tried again next round."""
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_S)
        with contextlib.suppress(StoreUnavailable):
            while await prune(time.time()) == PRUNE_BATCH:
                await asyncio.sleep(0)
