"""The admin API for the LoRA adapter registry, under /admin/v1/adapters.

Only admins set adapter paths: a path names a directory on the vLLM host, which the gateway
will ask vLLM to read. Every change goes to the audit trail (target type "adapter"). The
registry itself is the app's `state.adapters`, which the gateway sets beside the tenancy
store; routers see changes at their next registry refresh (`routing.registry_refresh_s`), or
at once for an adapter they have not seen yet.

`GET /admin/v1/replicas` shows each replica's health, load and adapters, read from the app's
`state.router` (the answering worker's own view).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, StringConstraints

from gateway.adapters.models import AdapterRecord, adapter_to_dict
from gateway.adapters.ownership import check_registration, tenants_using
from gateway.adapters.registry import AdapterRegistry
from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import (
    DEFAULT_PAGE,
    ErrorResponse,
    Limit,
    ModelName,
    Offset,
    Page,
    Patch,
    RecordId,
    RequestBody,
    ResponseBody,
)
from gateway.core.errors import GatewayError
from gateway.routing import Router
from gateway.tenancy.models import AuditEntry
from gateway.tenancy.store import Conflict, Store

if TYPE_CHECKING:
    from gateway.admin.api import AdminState

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


@dataclass(frozen=True, slots=True)
class AdapterAdmin:
    """An authenticated admin request on the registry."""

    registry: AdapterRegistry
    store: Store
    admin_key_id: str

    async def record(self, action: str, name: str, change: dict[str, Any]) -> None:
        await self.store.append_audit(
            AuditEntry.now(self.admin_key_id, action, "adapter", name, change)
        )

    async def adapter(self, name: str) -> AdapterRecord:
        record = await self.registry.get(name)
        if record is None:
            raise GatewayError(404, f"No adapter named '{name}'.", code="adapter_not_found")
        return record

    async def check_owner(self, record: AdapterRecord) -> None:
        """404 for an unknown owning tenant; 409 when another tenant's models use it."""
        if record.tenant_id is not None and await self.store.get_tenant(record.tenant_id) is None:
            raise GatewayError(
                404,
                f"No tenant with id '{record.tenant_id}'.",
                param="tenant_id",
                code="tenant_not_found",
            )
        check_registration(record, await self.store.list_tenants())


_bearer = HTTPBearer(auto_error=False, description="an admin key")


def registry_of(request: Request) -> AdapterRegistry:
    """The registry the gateway attached to the admin app; 503 when it attached none."""
    registry: AdapterRegistry | None = getattr(request.app.state, "adapters", None)
    if registry is None:
        raise GatewayError(
            503,
            "This gateway has no adapter registry attached to its admin API.",
            "server_error",
            code="adapter_registry_unavailable",
        )
    return registry


def router_of(request: Request) -> Router:
    """The router the gateway attached to the admin app; 503 when it attached none."""
    router: Router | None = getattr(request.app.state, "router", None)
    if router is None:
        raise GatewayError(
            503,
            "This gateway has no router attached to its admin API.",
            "server_error",
            code="router_unavailable",
        )
    return router


def _adapter_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AdapterAdmin:
    state: AdminState = request.app.state.admin
    admin_key_id = state.auth.identify(credentials.credentials if credentials else None)
    return AdapterAdmin(registry_of(request), state.store, admin_key_id)


AdapterAdminDep = Annotated[AdapterAdmin, Depends(_adapter_admin)]
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 503)
}
router = APIRouter(prefix=ADMIN_PREFIX, responses=_ERROR_RESPONSES, tags=["adapters"])


@router.post("/adapters", status_code=201)
async def register_adapter(body: AdapterCreate, admin: AdapterAdminDep) -> AdapterOut:
    """The gateway loads it into a replica on first use; only its owner's models may name it."""
    record = AdapterRecord(**body.model_dump())
    await admin.check_owner(record)
    try:
        await admin.registry.create(record)
    except Conflict:
        raise GatewayError(
            409, f"An adapter named '{record.name}' is registered already.", param="name"
        ) from None
    await admin.record("adapter.register", record.name, adapter_to_dict(record))
    return AdapterOut.model_validate(record)


@router.get("/adapters")
async def list_adapters(
    admin: AdapterAdminDep,
    tenant_id: RecordId | None = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> AdapterList:
    """By name; with `tenant_id`, that tenant's adapters only. Follow `next_offset` for the
    rest."""
    records = await admin.registry.list()
    if tenant_id is not None:
        records = [record for record in records if record.tenant_id == tenant_id]
    return AdapterList.of(records[offset : offset + limit + 1], offset, limit)


@router.get("/adapters/{name}")
async def get_adapter(name: AdapterName, admin: AdapterAdminDep) -> AdapterOut:
    return AdapterOut.model_validate(await admin.adapter(name))


@router.patch("/adapters/{name}")
async def update_adapter(
    name: AdapterName, body: AdapterUpdate, admin: AdapterAdminDep
) -> AdapterOut:
    """A new path is loaded in place on the replicas that hold the adapter, at its next use."""
    record = body.applied_to(await admin.adapter(name))
    await admin.check_owner(record)
    await admin.registry.update(record)
    await admin.record("adapter.update", name, body.model_dump(mode="json", exclude_unset=True))
    return AdapterOut.model_validate(record)


@router.delete("/adapters/{name}")
async def delete_adapter(name: AdapterName, admin: AdapterAdminDep) -> AdapterDeleted:
    """Refused while a tenant's models map to it; routers unload it from their replicas at
    their next registry refresh."""
    record = await admin.adapter(name)
    users = tenants_using(await admin.store.list_tenants(), name)
    if users:
        names = ", ".join(f"'{tenant.name}'" for tenant in users)
        raise GatewayError(
            409,
            f"Adapter '{name}' is in use by the models of tenant {names}: remap them first.",
            code="adapter_in_use",
        )
    await admin.registry.delete(name)
    await admin.record("adapter.delete", name, {"path": record.path})
    return AdapterDeleted(name=name, deleted=True)


@router.get("/replicas", tags=["replicas"])
async def list_replicas(request: Request, admin: AdapterAdminDep) -> ReplicaList:
    """Health, load and adapters of each replica, as the answering worker process sees them.

    Not paged: the replicas are the few the gateway's settings name."""
    routing = router_of(request)
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
