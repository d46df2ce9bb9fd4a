"""What the ledger counts, and under which key: one row per (UTC day, tenant, key, model)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

from gateway.core.status import CLIENT_CLOSED_REQUEST

# The model of a request refused before its model was known (e.g. an unknown model name):
# stored as one fixed value, so clients cannot create a row per made-up name.
UNRESOLVED_MODEL = ""


class UsageKey(NamedTuple):
    day: str  # YYYY-MM-DD, UTC
    tenant_id: str
    key_id: str
    model: str  # the public model name, or UNRESOLVED_MODEL


@dataclass(slots=True)
class UsageCounts:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    rejected: int = 0

    def add_request(self, prompt_tokens: int, completion_tokens: int, status: int) -> None:
        """Count one finished request by its final status.

        errors: 5xx, or 0 (the request ended without a status, which only a gateway failure
        leaves). rejected: 4xx, a request refused (limits, unknown model, bad body ...); 499
        (the client went away) is neither. Tokens count whatever the status, so a stream cut
        short is charged what it generated.
        """
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if status >= 500 or status == 0:
            self.errors += 1
        elif 400 <= status < 500 and status != CLIENT_CLOSED_REQUEST:
            self.rejected += 1

    def merge(self, other: UsageCounts) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.errors += other.errors
        self.rejected += other.rejected

    def values(self) -> tuple[int, ...]:
        """The counters in COUNTER_FIELDS order (dataclasses.astuple is ten times slower)."""
        return (
            self.requests,
            self.prompt_tokens,
            self.completion_tokens,
            self.errors,
            self.rejected,
        )


COUNTER_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(UsageCounts))
