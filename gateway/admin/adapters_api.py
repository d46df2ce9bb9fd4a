"""The admin API for the LoRA adapter registry, under /admin/v1/adapters.

Only admins set adapter paths: a path names a directory on the vLLM host, which the gateway
will ask vLLM to read. Every change goes to the audit trail (target type "adapter"). The
registry is the gateway's (`AdminState.adapters`); routers see changes at their next registry
refresh (`routing.registry_refresh_s`), or at once for an adapter they have not seen yet.

`GET /admin/v1/replicas` shows each replica's health, load and adapters, read from the
gateway's router (`AdminState.router`: the answering worker's own view).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, ClassVar

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints

from gateway.adapters.models import AdapterRecord, adapter_to_dict
from gateway.adapters.ownership import check_registration, tenants_using
from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import (
    DEFAULT_PAGE,
    Limit,
    ModelName,
    Offset,
    Page,
    Patch,
    RecordId,
    RequestBody,
    ResponseBody,
    error_responses,
)
from gateway.admin.state import AdminDep, AdminState, existing_tenant
from gateway.core.errors import ConflictError, NotFoundError
from gateway.tenancy.store import Conflict

# vLLM serves an adapter under this name; no "/" so that it fits one URL path segment
AdapterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")]
AdapterPath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="where vLLM reads the adapter: a directory on its host, or a hub id"),
]
Rank = Annotated[int, Field(ge=1, le=4096, description="the LoRA rank r")]
OwnerId = Annotated[
    RecordId, Field(description="the owning tenant's id; null: any tenant's models")
]


class AdapterCreate(RequestBody):
    name: AdapterName
    path: AdapterPath
    base_model: ModelName
    tenant_id: OwnerId | None = None
    rank: Rank | None = None


class AdapterUpdate(Patch):
    not_nullable: ClassVar[frozenset[str]] = frozenset({"path", "base_model"})

    path: AdapterPath | None = None
    base_model: ModelName | None = None
    tenant_id: OwnerId | None = None
    rank: Rank | None = None

    def applied_to(self, record: AdapterRecord) -> AdapterRecord:
        changes = {field: getattr(self, field) for field in self.model_fields_set}
        return replace(record, **changes, updated_at=time.time())


class AdapterOut(ResponseBody):
    name: str
    path: str
    base_model: str
    tenant_id: str | None
    rank: int | None
    created_at: float
    updated_at: float


class AdapterList(Page[AdapterOut]):
    """By name."""


class AdapterDeleted(BaseModel):
    name: str
    deleted: bool


class ReplicaOut(BaseModel):
    """One replica as this gateway process sees it (each worker keeps its own view)."""

    url: str
    healthy: bool
    failures: int = Field(description="failed checks or connects in a row")
    outstanding: int = Field(description="requests this process has in flight there")
    waiting: float = Field(description="vllm:num_requests_waiting at the last scrape")
    kv_cache_usage: float
    max_lora: int | None
    adapter_slots: int | None = Field(description="adapters the gateway keeps loaded there")
    base_models: list[str]
    adapters: list[str] = Field(description="loaded, least recently used first")
    running: list[str] = Field(description="in a vLLM LoRA slot at the last scrape")
    loading: list[str]


class ReplicaList(BaseModel):
    items: list[ReplicaOut]


router = APIRouter(
    prefix=ADMIN_PREFIX, responses=error_responses(400, 401, 404, 409, 503), tags=["adapters"]
)


async def _adapter(state: AdminState, name: str) -> AdapterRecord:
    record = await state.adapters.get(name)
    if record is None:
        raise NotFoundError(f"No adapter named '{name}'.", "adapter_not_found")
    return record


async def _check_owner(state: AdminState, record: AdapterRecord) -> None:
    """404 for an unknown owning tenant; 409 when another tenant's models use it."""
    if record.tenant_id is not None:
        await existing_tenant(state.store, record.tenant_id, param="tenant_id")
    check_registration(record, await state.store.list_tenants())


@router.post("/adapters", status_code=201)
async def register_adapter(body: AdapterCreate, admin: AdminDep) -> AdapterOut:
    """The gateway loads it into a replica on first use; only its owner's models may name it."""
    record = AdapterRecord(**body.model_dump())
    await _check_owner(admin.state, record)
    try:
        await admin.state.adapters.create(record)
    except Conflict:
        raise ConflictError(
            f"An adapter named '{record.name}' is registered already.", param="name"
        ) from None
    await admin.record("adapter.register", record.name, adapter_to_dict(record), invalidate=False)
    return AdapterOut.model_validate(record)


@router.get("/adapters")
async def list_adapters(
    admin: AdminDep,
    tenant_id: RecordId | None = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> AdapterList:
    """By name; with `tenant_id`, that tenant's adapters only. Follow `next_offset` for the
    rest."""
    records = await admin.state.adapters.list()
    if tenant_id is not None:
        records = [record for record in records if record.tenant_id == tenant_id]
    return AdapterList.of(records[offset : offset + limit + 1], offset, limit)


@router.get("/adapters/{name}")
async def get_adapter(name: AdapterName, admin: AdminDep) -> AdapterOut:
    return AdapterOut.model_validate(await _adapter(admin.state, name))


@router.patch("/adapters/{name}")
async def update_adapter(name: AdapterName, body: AdapterUpdate, admin: AdminDep) -> AdapterOut:
    """A new path is loaded in place on the replicas that hold the adapter, at its next use."""
    record = body.applied_to(await _adapter(admin.state, name))
    await _check_owner(admin.state, record)
    await admin.state.adapters.update(record)
    change = body.model_dump(mode="json", exclude_unset=True)
    await admin.record("adapter.update", name, change, invalidate=False)
    return AdapterOut.model_validate(record)


@router.delete("/adapters/{name}")
async def delete_adapter(name: AdapterName, admin: AdminDep) -> AdapterDeleted:
    """Refused while a tenant's models map to it; routers unload it from their replicas at
    their next registry refresh."""
    record = await _adapter(admin.state, name)
    users = tenants_using(await admin.state.store.list_tenants(), name)
    if users:
        names = ", ".join(f"'{tenant.name}'" for tenant in users)
        raise ConflictError(
            f"Adapter '{name}' is in use by the models of tenant {names}: remap them first.",
            code="adapter_in_use",
        )
    await admin.state.adapters.delete(name)
    await admin.record("adapter.delete", name, {"path": record.path}, invalidate=False)
    return AdapterDeleted(name=name, deleted=True)


@router.get("/replicas", tags=["replicas"])
async def list_replicas(admin: AdminDep) -> ReplicaList:
    """Health, load and adapters of each replica, as the answering worker process sees them.

    Not paged: the replicas are the few the gateway's settings name."""
    routing = admin.state.router
    return ReplicaList(
        items=[
            ReplicaOut(
                url=replica.url,
                healthy=replica.healthy,
                failures=replica.failures,
                outstanding=replica.outstanding,
                waiting=replica.waiting,
                kv_cache_usage=replica.kv_cache_usage,
                max_lora=replica.max_lora,
                adapter_slots=routing.loader.capacity(replica),
                base_models=sorted(replica.base_models),
                adapters=list(replica.adapters),
                running=sorted(replica.running),
                loading=sorted(replica.loading),
            )
            for replica in routing.pool.replicas
        ]
    )
