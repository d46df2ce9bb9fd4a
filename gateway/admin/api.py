"""The admin API: tenants, API keys and the audit trail, under /admin/v1.

A FastAPI app of its own (off the hot path: validation and OpenAPI matter more here than
microseconds); the gateway forwards every /admin/ path to it unchanged. Every change is
written to the audit trail with the admin key id that made it, and every change that can
alter who may call what tells all gateway instances to drop their cached keys.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from gateway.adapters.ownership import check_tenant_routes
from gateway.admin import ADMIN_PREFIX
from gateway.admin.adapters_api import router as adapters_router
from gateway.admin.console.router import router as console_router
from gateway.admin.records_api import router as records_router
from gateway.admin.safety_api import router as safety_router
from gateway.admin.schemas import (
    DEFAULT_PAGE,
    MAX_TIMESTAMP,
    AuditList,
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
    error_responses,
    key_out,
    key_with_secret,
    tenant_out,
)
from gateway.admin.state import (
    Admin,
    AdminApp,
    AdminDep,
    AdminState,
    admin_state,
    bearer,
    existing_tenant,
    identify,
)
from gateway.admin.usage_api import router as usage_router
from gateway.core.errors import (
    AuthenticationError,
    BadRequest,
    ConflictError,
    GatewayError,
    InternalServerError,
    NotFoundError,
)
from gateway.core.fields import Name
from gateway.tenancy.models import ApiKey, Tenant
from gateway.tenancy.secrets import new_id, new_secret, shown_prefix
from gateway.tenancy.store import Conflict, NotFound, Store

router = APIRouter(prefix=ADMIN_PREFIX, responses=error_responses(400, 401, 404, 409))


async def _key(store: Store, key_id: str) -> ApiKey:
    key = await store.get_key(key_id)
    if key is None:
        raise NotFoundError(f"No API key with id '{key_id}'.", "key_not_found")
    return key


def _check_tenant(tenant: Tenant) -> None:
    if tenant.default_model is not None and tenant.default_model not in tenant.models:
        raise BadRequest(
            f"default_model '{tenant.default_model}' is not one of the tenant's models.",
            param="default_model",
        )


def _check_allowed_models(allowed: list[str] | None, tenant: Tenant | None) -> None:
    models = tenant.models if tenant is not None else {}
    unknown = sorted(set(allowed or ()) - models.keys())
    if unknown:
        raise BadRequest(
            f"allowed_models must be among the tenant's models; unknown: {', '.join(unknown)}.",
            param="allowed_models",
        )


def _name_taken(name: str) -> ConflictError:
    return ConflictError(f"A tenant named '{name}' already exists.", code="conflict", param="name")


@router.post("/tenants", status_code=201, tags=["tenants"])
async def create_tenant(body: TenantCreate, admin: AdminDep) -> TenantOut:
    tenant = body.to_record(new_id("tenant"))
    _check_tenant(tenant)
    await check_tenant_routes(admin.state.adapters, tenant)
    try:
        await admin.state.store.create_tenant(tenant)
    except Conflict:
        raise _name_taken(tenant.name) from None
    await admin.record("tenant.create", tenant.id, tenant_out(tenant), invalidate=False)
    return TenantOut.model_validate(tenant)


@router.get("/tenants", tags=["tenants"])
async def list_tenants(
    admin: AdminDep, offset: Offset = 0, limit: Limit = DEFAULT_PAGE
) -> TenantList:
    """Tenants in creation order; follow `next_offset` for the rest."""
    return TenantList.of(await admin.state.store.list_tenants(offset, limit + 1), offset, limit)


@router.get("/tenants/{tenant_id}", tags=["tenants"])
async def get_tenant(tenant_id: RecordId, admin: AdminDep) -> TenantOut:
    return TenantOut.model_validate(await existing_tenant(admin.state.store, tenant_id))


@router.patch("/tenants/{tenant_id}", tags=["tenants"])
async def update_tenant(tenant_id: RecordId, body: TenantUpdate, admin: AdminDep) -> TenantOut:
    tenant = body.applied_to(await existing_tenant(admin.state.store, tenant_id))
    _check_tenant(tenant)
    await check_tenant_routes(admin.state.adapters, tenant)
    try:
        await admin.state.store.update_tenant(tenant)
    except Conflict:
        raise _name_taken(tenant.name) from None
    change = body.model_dump(mode="json", exclude_unset=True)
    await admin.record("tenant.update", tenant.id, change, invalidate=True)
    return TenantOut.model_validate(tenant)


async def _set_enabled(admin: Admin, tenant_id: str, enabled: bool) -> TenantOut:
    tenant = await existing_tenant(admin.state.store, tenant_id)
    if tenant.enabled != enabled:
        tenant = replace(tenant, enabled=enabled, updated_at=time.time())
        await admin.state.store.update_tenant(tenant)
        action = "tenant.enable" if enabled else "tenant.disable"
        await admin.record(action, tenant.id, {"enabled": enabled}, invalidate=True)
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
    tenant = await existing_tenant(admin.state.store, tenant_id)
    await admin.state.store.delete_tenant(tenant_id)
    await admin.record("tenant.delete", tenant.id, {"name": tenant.name}, invalidate=True)
    return TenantDeleted(id=tenant_id, deleted=True)


@router.post("/keys", status_code=201, tags=["keys"])
async def create_key(body: KeyCreate, admin: AdminDep) -> KeyWithSecret:
    """The response is the only time the key's secret is shown."""
    if body.expires_at is not None and body.expires_in_s is not None:
        raise BadRequest("Give expires_at or expires_in_s, not both.", param="expires_in_s")
    now = time.time()
    if body.expires_at is not None and body.expires_at <= now:
        raise BadRequest("expires_at is in the past.", param="expires_at")
    tenant = await existing_tenant(admin.state.store, body.tenant_id, param="tenant_id")
    _check_allowed_models(body.allowed_models, tenant)
    secret = new_secret()
    key = body.to_record(new_id("key"), shown_prefix(secret), admin.state.hasher.hash(secret), now)
    await admin.state.store.create_key(key)
    await admin.record("key.create", key.id, key_out(key), invalidate=False)
    return key_with_secret(key, secret)


@router.get("/keys", tags=["keys"])
async def list_keys(
    admin: AdminDep,
    tenant_id: RecordId | None = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_PAGE,
) -> KeyPage:
    """Keys in creation order; follow `next_offset` for the rest."""
    return KeyPage.of(
        await admin.state.store.list_keys(tenant_id, offset, limit + 1), offset, limit
    )


@router.get("/keys/{key_id}", tags=["keys"])
async def get_key(key_id: RecordId, admin: AdminDep) -> KeyOut:
    return KeyOut.model_validate(await _key(admin.state.store, key_id))


@router.patch("/keys/{key_id}", tags=["keys"])
async def update_key(key_id: RecordId, body: KeyUpdate, admin: AdminDep) -> KeyOut:
    key = body.applied_to(await _key(admin.state.store, key_id))
    if body.allowed_models is not None:
        _check_allowed_models(
            body.allowed_models, await admin.state.store.get_tenant(key.tenant_id)
        )
    await admin.state.store.update_key(key)
    change = body.model_dump(mode="json", exclude_unset=True)
    await admin.record("key.update", key.id, change, invalidate=True)
    return KeyOut.model_validate(key)


@router.post("/keys/{key_id}/revoke", tags=["keys"])
async def revoke_key(key_id: RecordId, admin: AdminDep) -> KeyOut:
    """Revoking a revoked key changes nothing and keeps its first revocation time."""
    key = await _key(admin.state.store, key_id)
    if key.revoked_at is None:
        key = replace(key, revoked_at=time.time())
        await admin.state.store.update_key(key)
        await admin.record("key.revoke", key.id, {"revoked_at": key.revoked_at}, invalidate=True)
    return KeyOut.model_validate(key)


@router.post("/keys/{key_id}/rotate", tags=["keys"])
async def rotate_key(
    key_id: RecordId, admin: AdminDep, body: KeyRotate | None = None
) -> KeyWithSecret:
    """A new secret, shown once; the old one keeps working for `grace_period_s` (default 0)."""
    key = await _key(admin.state.store, key_id)
    if key.revoked_at is not None:
        raise ConflictError("A revoked key cannot be rotated.", code="key_revoked")
    grace_s = (body or KeyRotate()).grace_period_s
    secret = new_secret()
    in_grace = grace_s > 0
    key = replace(
        key,
        prefix=shown_prefix(secret),
        secret_hash=admin.state.hasher.hash(secret),
        grace_secret_hash=key.secret_hash if in_grace else None,
        grace_until=time.time() + grace_s if in_grace else None,
    )
    await admin.state.store.update_key(key)
    change = {"prefix": key.prefix, "grace_period_s": grace_s, "grace_until": key.grace_until}
    await admin.record("key.rotate", key.id, change, invalidate=True)
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
    entries = await admin.state.store.list_audit(target_id, action, since, limit + 1, offset)
    return AuditList.of(entries, offset, limit)


def _error_response(error: GatewayError) -> Response:
    return Response(error.body(), error.status, error.headers, media_type="application/json")


async def _gateway_error(_: Request, error: GatewayError) -> Response:
    return _error_response(error)


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Framework errors (unknown route, wrong method) in the same format as the gateway's."""
    if error.status_code == 404:
        message = f"Unknown route: {request.method} {request.url.path}"
        return _error_response(NotFoundError(message, "unknown_url"))
    headers = dict(error.headers or {})
    return _error_response(GatewayError(error.status_code, str(error.detail), headers=headers))


async def _invalid_request(request: Request, error: RequestValidationError) -> Response:
    """400 naming the first invalid field as `param` (e.g. ``limits.tokens_per_day``).

    FastAPI parses a JSON body before it runs dependencies, so authentication is checked here
    again: a caller without an admin key gets 401, never a hint about what the API accepts.
    """
    try:
        identify(admin_state(request), await bearer(request))
    except AuthenticationError as unauthenticated:
        return _error_response(unauthenticated)
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return _error_response(BadRequest("The request body is not valid JSON."))
    param = ".".join(str(part) for part in first["loc"][1:]) or None
    where = param or f"request {first['loc'][0]}"
    return _error_response(BadRequest(f"{where}: {first['msg']}", param=param))


async def _not_found(_: Request, error: NotFound) -> Response:
    """A record deleted between this request's read and its write."""
    return _error_response(NotFoundError(str(error) or "Not found.", "not_found"))


async def _conflict(_: Request, error: Conflict) -> Response:
    return _error_response(ConflictError(str(error) or "Conflict.", code="conflict"))


async def _server_error(_: Request, error: Exception) -> Response:
    message = "The admin API failed; see the gateway's log."
    return _error_response(InternalServerError(message))


def create_admin_app(state: AdminState) -> AdminApp:
    """The admin app over `state`; the caller opens and closes what it holds."""
    app = AdminApp(
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
    app.admin_state = state
    app.include_router(router)
    app.include_router(adapters_router)
    app.include_router(console_router)
    app.include_router(safety_router)
    app.include_router(usage_router)
    app.include_router(records_router)
    return app
