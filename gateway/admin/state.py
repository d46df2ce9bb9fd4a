"""What every admin route shares: the state it works on, the admin key check, the audit trail.

`create_admin_app` is given an `AdminState` (everything the routes read) and sets it once
on its `AdminApp`; routes reach it through `AdminDep`, which also checks the request's
admin key, and write the audit trail through `Admin.record`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.adapters.registry import AdapterRegistry
from gateway.core.errors import NotFoundError
from gateway.routing import Router
from gateway.safety.policy_store import PolicyStore
from gateway.tenancy.admin_keys import AdminAuth
from gateway.tenancy.models import AuditEntry, Tenant
from gateway.tenancy.secrets import KeyHasher
from gateway.tenancy.store import Store
from gateway.usage.ledger import UsageLedger


@dataclass(frozen=True, slots=True)
class AdminState:
    """The gateway's parts the admin API reads and changes; the gateway opens and closes
    them."""

    store: Store  # tenants, API keys, the audit trail, the invalidation channel
    hasher: KeyHasher  # hashes the secrets of the keys the API creates and rotates
    auth: AdminAuth  # the configured admin keys
    ledger: UsageLedger
    adapters: AdapterRegistry
    router: Router  # the answering worker's view of the replicas
    safety_policies: PolicyStore


class AdminApp(FastAPI):
    """The admin API's app: `admin_state` is set once, by `create_admin_app`."""

    admin_state: AdminState


bearer = HTTPBearer(auto_error=False, description="an admin key")


def admin_state(request: Request) -> AdminState:
    """The state `create_admin_app` gave the app that serves `request`."""
    app: AdminApp = request.app
    return app.admin_state


def identify(state: AdminState, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The admin key id of the request's bearer token, or 401."""
    return state.auth.identify(credentials.credentials if credentials else None)


async def existing_tenant(store: Store, tenant_id: str, param: str | None = None) -> Tenant:
    """The tenant `tenant_id`, or 404 ``tenant_not_found``; `param` names the body field that
    gave the id (None when it came in the URL)."""
    tenant = await store.get_tenant(tenant_id)
    if tenant is None:
        raise NotFoundError(f"No tenant with id '{tenant_id}'.", "tenant_not_found", param)
    return tenant


@dataclass(frozen=True, slots=True)
class Admin:
    """An authenticated admin request: what it works on, and who is making it."""

    state: AdminState
    admin_key_id: str

    async def record(
        self, action: str, target_id: str, change: dict[str, Any], *, invalidate: bool
    ) -> None:
        """Append the audit entry of `action` ("<target type>.<verb>") on `target_id`; then,
        with `invalidate` (a change to who may call what, or under which policy), tell every
        gateway instance to drop its cached keys and reload its policies."""
        target_type = action.partition(".")[0]
        await self.state.store.append_audit(
            AuditEntry.now(self.admin_key_id, action, target_type, target_id, change)
        )
        if invalidate:
            await self.state.store.publish_invalidation()


def _admin(
    state: Annotated[AdminState, Depends(admin_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Admin:
    return Admin(state, identify(state, credentials))


AdminDep = Annotated[Admin, Depends(_admin)]
