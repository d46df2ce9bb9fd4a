"""The adapter record, shared by both registry stores, the admin API and the loader."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class AdapterRecord:
    """A LoRA adapter the gateway may load: `name` is the upstream model name vLLM serves it
    under, `path` where vLLM reads it (a directory on the vLLM host, or a hub id).

    `tenant_id` None means shared: any tenant's model map may name it; otherwise only the
    owning tenant's may.
    """

    name: str
    path: str
    base_model: str
    tenant_id: str | None = None
    rank: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


def adapter_to_dict(record: AdapterRecord) -> dict[str, Any]:
    return asdict(record)


def adapter_from_dict(data: dict[str, Any]) -> AdapterRecord:
    return AdapterRecord(**data)
