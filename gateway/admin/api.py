"""The admin API: tenants, API keys and the audit trail, under /admin/v1.

A FastAPI app of its own (off the hot path: validation and OpenAPI matter more here than
microseconds); the gateway forwards every /admin/ path to it unchanged. Every change is
written to the audit trail with the admin key id that made it, and every change that can
alter who may call what tells all gateway instances to drop their cached keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from gateway.adapters.ownership import check_tenant_routes
from gateway.admin import ADMIN_PREFIX
from gateway.admin.adapters_api import registry_of
from gateway.admin.adapters_api import router as adapters_router
from gateway.admin.console.router import router as console_router
from gateway.admin.safety_api import router as safety_router
from gateway.admin.schemas import (
    DEFAULT_PAGE,
    MAX_TIMESTAMP,
    AuditList,
    ErrorResponse,
    KeyCreate,
    KeyOut,
    KeyPage,
    KeyRotate,
    KeyUpdate,
    KeyWithSecret,
    Limit,
    Offset,
    RecordId,
    TenantCreate,
    TenantDeleted,
    TenantList,
    TenantOut,
    TenantUpdate,
    key_out,
    key_with_secret,
    tenant_out,
)
from gateway.core.errors import GatewayError
from gateway.core.fields import Name
from gateway.tenancy.admin_keys import AdminAuth
from gateway.tenancy.models import ApiKey, AuditEntry, Tenant
from gateway.tenancy.secrets import KeyHasher, new_id, new_secret, shown_prefix
from gateway.tenancy.store import Conflict, NotFound, Store


@dataclass(frozen=True, slots=True)
class AdminState:
    store: Store
    hasher: KeyHasher
    auth: AdminAuth


@dataclass(frozen=True, slots=True)
class Admin:
    """An authenticated admin request: the store, and who is changing it."""

    store: Store
    hasher: KeyHasher
    admin_key_id: str

    async def record(
        self, action: str, target: Tenant | ApiKey, change: dict[str, Any], invalidate: bool
    ) -> None:
        """Append the audit entry, then (for auth-relevant changes) drop every key cache."""
        target_type = "tenant" if isinstance(target, Tenant) else "key"
        await self.store.append_audit(
            AuditEntry.now(self.admin_key_id, action, target_type, target.id, change)
        )
        if invalidate:
            await self.store.publish_invalidation()

    async def tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise GatewayError(404, f"No tenant with id '{tenant_id}'.", code="tenant_not_found")
        return tenant

    async def key(self, key_id: str) -> ApiKey:
        key = await self.store.get_key(key_id)
        if key is None:
            raise GatewayError(404, f"No API key with id '{key_id}'.", code="key_not_found")
        return key


_bearer = HTTPBearer(auto_error=False, description="an admin key")


def _admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Admin:
    state: AdminState = request.app.state.admin
    return Admin(state.store, state.hasher, state.auth.identify(_token(credentials)))


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials else None


AdminDep = Annotated[Admin, Depends(_admin)]
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 409)
}
router = APIRouter(prefix=ADMIN_PREFIX, responses=_ERROR_RESPONSES)


def _check_tenant(tenant: Tenant) -> None:
    if tenant.default_model is not None and tenant.default_model not in tenant.models:
        raise GatewayError(
            400,
            f"default_model '{tenant.default_model}' is not one of the tenant's models.",
            param="default_model",
        )


def _check_allowed_models(allowed: list[str] | None, tenant: Tenant | None) -> None:
    models = tenant.models if tenant is not None else {}
    unknown = sorted(set(allowed or ()) - models.keys())
    if unknown:
        raise GatewayError(
            400,
            f"allowed_models must be among the tenant's models; unknown: {', '.join(unknown)}.",
            param="allowed_models",
        )


def _name_taken(name: str) -> GatewayError:
    return GatewayError(
        409, f"A tenant named '{name}' already exists.", param="name", code="conflict"
    )


@router.post("/tenants", status_code=201, tags=["tenants"])
async def create_tenant(body: TenantCreate, admin: AdminDep, request: Request) -> TenantOut:
    tenant = body.to_record(new_id("tenant"))
    _check_tenant(tenant)
    await check_tenant_routes(registry_of(request), tenant)
    try:
        await admin.store.create_tenant(tenant)
    except Conflict:
        raise _name_taken(tenant.name) from None
    await admin.record("tenant.create", tenant, tenant_out(tenant), invalidate=False)
    return TenantOut.model_validate(tenant)


@router.get("/tenants", tags=["tenants"])
async def list_tenants(
    admin: AdminDep, offset: Offset = 0, limit: Limit = DEFAULT_PAGE
) -> TenantList:
    """Tenants in creation order; follow `next_offset` for the rest."""
    return TenantList.of(await admin.store.list_tenants(offset, limit + 1), offset, limit)


@router.get("/tenants/{tenant_id}", tags=["tenants"])
async def get_tenant(tenant_id: RecordId, admin: AdminDep) -> TenantOut:
    return TenantOut.model_validate(await admin.tenant(tenant_id))


@router.patch("/tenants/{tenant_id}", tags=["tenants"])
async def update_tenant(
    tenant_id: RecordId, body: TenantUpdate, admin: AdminDep, request: Request
) -> TenantOut:
    tenant = body.applied_to(await admin.tenant(tenant_id))
    _check_tenant(tenant)
    await check_tenant_routes(registry_of(request), tenant)
    try:
        await admin.store.update_tenant(tenant)
    except Conflict:
        raise _name_taken(tenant.name) from None
    change = body.model_dump(mode="json", exclude_unset=True)
    await admin.record("tenant.update", tenant, change, invalidate=True)
    return TenantOut.model_validate(tenant)


async def _set_enabled(admin: Admin, tenant_id: str, enabled: bool) -> TenantOut:
    tenant = await admin.tenant(tenant_id)
    if tenant.enabled != enabled:
        tenant = replace(tenant, enabled=enabled, updated_at=time.time())
        await admin.store.update_tenant(tenant)
        action = "tenant.enable" if enabled else "tenant.disable"
        await admin.record(action, tenant, {"enabled": enabled}, invalidate=True)
    return TenantOut.model_validate(tenant)


@router.post("/tenants/{tenant_id}/disable", tags=["tenants"])
async def disable_tenant(tenant_id: RecordId, admin: AdminDep) -> TenantOut:
    """Its keys stop working at once; they work again after `enable`."""
    return await _set_enabled(admin, tenant_id, enabled=False)


@router.post("/tenants/{tenant_id}/enable", tags=["tenants"])
async def enable_tenant(tenant_id: RecordId, admin: AdminDep) -> TenantOut:
    return await _set_enabled(admin, tenant_id, enabled=True)


@router.delete("/tenants/{tenant_id}", tags=["tenants"])
async def delete_tenant(tenant_id: RecordId, admin: AdminDep) -> TenantDeleted:
    """Deletes the tenant and revokes its keys (kept, revoked, for the audit trail)."""
    tenant = await admin.tenant(tenant_id)
    await admin.store.delete_tenant(tenant_id)
    await admin.record("tenant.delete", tenant, {"name": tenant.name}, invalidate=True)
    return TenantDeleted(id=tenant_id, deleted=True)


@router.post("/keys", status_code=201, tags=["keys"])
async def create_key(body: KeyCreate, admin: AdminDep) -> KeyWithSecret:
    """The response is the only time the key's secret is shown."""
    if body.expires_at is not None and body.expires_in_s is not None:
        raise GatewayError(400, "Give expires_at or expires_in_s, not both.", param="expires_in_s")
    now = time.time()
    if body.expires_at is not None and body.expires_at <= now:
        raise GatewayError(400, "expires_at is in the past.", param="expires_at")
    tenant = await admin.store.get_tenant(body.tenant_id)
    if tenant is None:
        raise GatewayError(
            404,
            f"No tenant with id '{body.tenant_id}'.",
            param="tenant_id",
            code="tenant_not_found",
        )
    _check_allowed_models(body.allowed_models, tenant)
    secret = new_secret()
    key = body.to_record(new_id("key"), shown_prefix(secret), admin.hasher.hash(secret), now)
    await admin.store.create_key(key)
    await admin.record("key.create", key, key_out(key), invalidate=False)
    return key_with_secret(key, secret)


@router.get("/keys", tags=["keys"])
async def list_keys(
    admin: AdminDep,
    tenant_id: RecordId | None = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> KeyPage:
    """Keys in creation order; follow `next_offset` for the rest."""
    return KeyPage.of(await admin.store.list_keys(tenant_id, offset, limit + 1), offset, limit)


@router.get("/keys/{key_id}", tags=["keys"])
async def get_key(key_id: RecordId, admin: AdminDep) -> KeyOut:
    return KeyOut.model_validate(await admin.key(key_id))


@router.patch("/keys/{key_id}", tags=["keys"])
async def update_key(key_id: RecordId, body: KeyUpdate, admin: AdminDep) -> KeyOut:
    key = body.applied_to(await admin.key(key_id))
    if body.allowed_models is not None:
        _check_allowed_models(body.allowed_models, await admin.store.get_tenant(key.tenant_id))
    await admin.store.update_key(key)
    change = body.model_dump(mode="json", exclude_unset=True)
    await admin.record("key.update", key, change, invalidate=True)
    return KeyOut.model_validate(key)


@router.post("/keys/{key_id}/revoke", tags=["keys"])
async def revoke_key(key_id: RecordId, admin: AdminDep) -> KeyOut:
    """Revoking a revoked key changes nothing and keeps its first revocation time."""
    key = await admin.key(key_id)
    if key.revoked_at is None:
        key = replace(key, revoked_at=time.time())
        await admin.store.update_key(key)
        await admin.record("key.revoke", key, {"revoked_at": key.revoked_at}, invalidate=True)
    return KeyOut.model_validate(key)


@router.post("/keys/{key_id}/rotate", tags=["keys"])
async def rotate_key(
    key_id: RecordId, admin: AdminDep, body: KeyRotate | None = None
) -> KeyWithSecret:
    """A new secret, shown once; the old one keeps working for `grace_period_s` (default 0)."""
    key = await admin.key(key_id)
    if key.revoked_at is not None:
        raise GatewayError(409, "A revoked key cannot be rotated.", code="key_revoked")
    grace_s = (body or KeyRotate()).grace_period_s
    secret = new_secret()
    in_grace = grace_s > 0
    key = replace(
        key,
        prefix=shown_prefix(secret),
        secret_hash=admin.hasher.hash(secret),
        grace_secret_hash=key.secret_hash if in_grace else None,
        grace_until=time.time() + grace_s if in_grace else None,
    )
    await admin.store.update_key(key)
    change = {"prefix": key.prefix, "grace_period_s": grace_s, "grace_until": key.grace_until}
    await admin.record("key.rotate", key, change, invalidate=True)
    return key_with_secret(key, secret)


@router.get("/audit", tags=["audit"])
async def list_audit(
    admin: AdminDep,
    target_id: RecordId | None = None,
    action: Name | None = None,
    since: Annotated[float | None, Query(ge=0, le=MAX_TIMESTAMP)] = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> AuditList:
    """Newest first; follow `next_offset` for older entries (changes made meanwhile shift the
    pages, so a page may repeat an entry of the one before)."""
    entries = await admin.store.list_audit(target_id, action, since, limit + 1, offset)
    return AuditList.of(entries, offset, limit)


def _error_response(error: GatewayError) -> Response:
    return Response(error.body(), error.status, error.headers, media_type="application/json")


async def _gateway_error(_: Request, error: GatewayError) -> Response:
    return _error_response(error)


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Framework errors (unknown route, wrong method) in the same format as the gateway's."""
    if error.status_code == 404:
        message = f"Unknown route: {request.method} {request.url.path}"
        return _error_response(GatewayError(404, message, code="unknown_url"))
    headers = dict(error.headers or {})
    return _error_response(GatewayError(error.status_code, str(error.detail), headers=headers))


async def _invalid_request(request: Request, error: RequestValidationError) -> Response:
    """400 naming the first invalid field as `param` (e.g. ``limits.tokens_per_day``).

    FastAPI parses a JSON body before it runs dependencies, so authentication is checked here
    again: a caller without an admin key gets 401, never a hint about what the API accepts.
    """
    state: AdminState = request.app.state.admin
    try:
        state.auth.identify(_token(await _bearer(request)))
    except GatewayError as unauthenticated:
        return _error_response(unauthenticated)
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return _error_response(GatewayError(400, "The request body is not valid JSON."))
    param = ".".join(str(part) for part in first["loc"][1:]) or None
    where = param or f"request {first['loc'][0]}"
    return _error_response(GatewayError(400, f"{where}: {first['msg']}", param=param))


async def _not_found(_: Request, error: NotFound) -> Response:
    """A record deleted between this request's read and its write."""
    return _error_response(GatewayError(404, str(error) or "Not found.", code="not_found"))


async def _conflict(_: Request, error: Conflict) -> Response:
    return _error_response(GatewayError(409, str(error) or "Conflict.", code="conflict"))


async def _server_error(_: Request, error: Exception) -> Response:
    message = "The admin API failed; see the gateway's log."
    return _error_response(GatewayError(500, message, "server_error"))


def create_admin_app(store: Store, hasher: KeyHasher, admin_keys: list[str]) -> FastAPI:
    """The admin app over `store`; the caller opens and closes the store."""
    app = FastAPI(
        title="vllm-gateway admin API",
        version="1",
        openapi_url=f"{ADMIN_PREFIX}/openapi.json",
        docs_url=f"{ADMIN_PREFIX}/docs",
        redoc_url=None,
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            RequestValidationError: _invalid_request,
            NotFound: _not_found,
            Conflict: _conflict,
            Exception: _server_error,
        },
    )
    app.state.admin = AdminState(store, hasher, AdminAuth(admin_keys))
    app.include_router(router)
    app.include_router(adapters_router)
    app.include_router(console_router)
    app.include_router(safety_router)
    return app
