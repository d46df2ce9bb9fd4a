"""What the safety stage did, for metrics and the audit trail, never with the content itself.

Every decision is one `SafetyEvent` (tenant, key, policy, rule, detector, direction, action).
`SafetyEvents` counts them in memory (the metrics exporter reads `counts`, or subscribes a
hook to see each one) and queues an audit entry for each; a background task writes the queue
to the store, so a request never waits for the audit write. A full queue drops entries and
counts them in `audit_dropped` rather than slowing requests down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from gateway.core.context import current_request
from gateway.core.errors import StoreUnavailable
from gateway.tenancy.models import AuditEntry
from gateway.tenancy.store import Store

logger = logging.getLogger("gateway.safety")

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    tenant_id: str | None
    key_id: str | None
    policy: str
    rule: str
    detector: str
    direction: str  # input | output
    action: str  # block | redact | mask | flag | unavailable (a guard model that failed)

    @property
    def labels(self) -> tuple[str, str, str, str, str, str]:
        """The metric labels: per tenant, policy, rule, detector, direction and action."""
        tenant = self.tenant_id or ANONYMOUS
        return (tenant, self.policy, self.rule, self.detector, self.direction, self.action)

    def audit_entry(self) -> AuditEntry:
        change = {k: v for k, v in asdict(self).items() if k != "tenant_id"}
        return AuditEntry.now(
            self.key_id or ANONYMOUS,
            f"safety.{self.action}",
            "tenant",
            self.tenant_id or ANONYMOUS,
            change,
        )


EventHook = Callable[[SafetyEvent], None]
# which action a request's usage record names when several rules acted on it
_SEVERITY = {"block": 4, "redact": 3, "mask": 2, "flag": 1}


def note_on_request(event: SafetyEvent) -> None:
    """A hook: the strongest action taken on the request being served, noted on its context
    (as "direction:action") for its usage record."""
    ctx = current_request.get()
    if ctx is None:
        return
    noted = ctx.safety_action
    severity = _SEVERITY.get(event.action, 0)
    if noted is None or severity > _SEVERITY.get(noted.partition(":")[2], 0):
        ctx.safety_action = f"{event.direction}:{event.action}"


class SafetyEvents:
    def __init__(self, audit_queue_size: int) -> None:
        self.counts: dict[tuple[str, str, str, str, str, str], int] = {}
        self.audit_dropped = 0
        self._hooks: list[EventHook] = []
        self._audit: asyncio.Queue[AuditEntry] = asyncio.Queue(audit_queue_size)

    def subscribe(self, hook: EventHook) -> None:
        """Call `hook` with every event, on the request's own path: it must be quick."""
        self._hooks.append(hook)

    def record(self, event: SafetyEvent) -> None:
        labels = event.labels
        self.counts[labels] = self.counts.get(labels, 0) + 1
        for hook in self._hooks:
            hook(event)
        try:
            self._audit.put_nowait(event.audit_entry())
        except asyncio.QueueFull:
            self.audit_dropped += 1

    async def write_audit(self, store: Store) -> None:
        """Write queued audit entries until cancelled; a failed write is logged and skipped
        (while the store is unavailable: counted, its health logs the outage once)."""
        while True:
            entry = await self._audit.get()
            try:
                await store.append_audit(entry)
            except StoreUnavailable:
                self.audit_dropped += 1
            except Exception:
                logger.warning("could not write safety audit entry %s", entry.action, exc_info=True)

    async def flush_audit(self, store: Store) -> None:
        """Write what is queued now (at shutdown, and for tests)."""
        while not self._audit.empty():
            await store.append_audit(self._audit.get_nowait())
