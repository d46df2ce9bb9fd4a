"""The admin API for stored safety policies, under /admin/v1/safety/policies.

Policies live beside the tenants (same Redis or SQLite file). Every change is audited with
the admin key that made it and announced on the store's invalidation channel, on which every
gateway instance reloads its policies. A stored policy replaces a configured one of the same
name; a tenant (or a key, through `metadata.safety_policy`) names the policy it is under.

The policy store is the one the gateway attaches as `app.state.safety_policies` (its safety
engine's); on the embedded SQLite store the router can open the table itself. Like the
adapters router, it checks admin keys through `AdminState` so that gateway.admin.api can
include it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import DEFAULT_PAGE, ErrorResponse, Limit, Offset, Page
from gateway.core.errors import GatewayError
from gateway.safety.policy import NO_POLICY, PolicySpec
from gateway.safety.policy_store import PolicyStore, SqlitePolicyStore, StoredPolicy
from gateway.tenancy.models import AuditEntry
from gateway.tenancy.sqlite_store import SqliteStore
from gateway.tenancy.store import Store

if TYPE_CHECKING:
    from gateway.admin.api import AdminState

PolicyName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class PolicyOut(BaseModel):
    name: str
    policy: PolicySpec
    updated_at: float

    @classmethod
    def of(cls, stored: StoredPolicy) -> PolicyOut:
        return cls(name=stored.name, policy=stored.spec, updated_at=stored.updated_at)


class PolicyList(Page[PolicyOut]):
    """By name."""


class PolicyDeleted(BaseModel):
    name: str
    deleted: bool


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 503)
}
router = APIRouter(prefix=f"{ADMIN_PREFIX}/safety", tags=["safety"], responses=_ERROR_RESPONSES)
_bearer = HTTPBearer(auto_error=False, description="an admin key")


@dataclass(frozen=True, slots=True)
class PolicyAdmin:
    """An authenticated admin request on the stored policies."""

    policies: PolicyStore
    store: Store
    admin_key_id: str

    async def record(self, action: str, name: str, change: dict[str, Any]) -> None:
        """Audit the change, then tell every gateway instance to reload its policies."""
        await self.store.append_audit(
            AuditEntry.now(self.admin_key_id, action, "safety_policy", name, change)
        )
        await self.store.publish_invalidation()


def policies_of(request: Request) -> PolicyStore:
    """The attached policy store, or the table in the embedded SQLite file; else 503."""
    state = request.app.state
    policies: PolicyStore | None = getattr(state, "safety_policies", None)
    if policies is None:
        store = state.admin.store
        if not isinstance(store, SqliteStore):
            raise GatewayError(
                503,
                "This gateway has no safety policy store attached to its admin API.",
                "server_error",
                code="safety_policies_unavailable",
            )
        policies = state.safety_policies = SqlitePolicyStore(store.path)
    return policies


def _policy_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> PolicyAdmin:
    state: AdminState = request.app.state.admin
    admin_key_id = state.auth.identify(credentials.credentials if credentials else None)
    return PolicyAdmin(policies_of(request), state.store, admin_key_id)


PolicyAdminDep = Annotated[PolicyAdmin, Depends(_policy_admin)]


def _not_found(name: str) -> GatewayError:
    return GatewayError(
        404, f"No stored safety policy named '{name}'.", code="safety_policy_not_found"
    )


@router.get("/policies")
async def list_policies(
    admin: PolicyAdminDep, offset: Offset = 0, limit: Limit = DEFAULT_PAGE
) -> PolicyList:
    """The stored policies by name (those in the settings file are not listed); follow
    `next_offset` for the rest."""
    stored = await admin.policies.load_all()
    page = [PolicyOut.of(policy) for policy in stored[offset : offset + limit + 1]]
    return PolicyList.of(page, offset, limit)


@router.get("/policies/{name}")
async def get_policy(name: PolicyName, admin: PolicyAdminDep) -> PolicyOut:
    stored = await admin.policies.get(name)
    if stored is None:
        raise _not_found(name)
    return PolicyOut.of(stored)


@router.put("/policies/{name}", responses={201: {"model": PolicyOut}})
async def put_policy(
    name: PolicyName, body: PolicySpec, admin: PolicyAdminDep, response: Response
) -> PolicyOut:
    """Create (201) or replace (200) the policy; every gateway instance applies it at once."""
    if name == NO_POLICY:
        raise GatewayError(400, f"'{NO_POLICY}' is reserved: it means no policy.", param="name")
    stored, created = await admin.policies.put(name, body)
    await admin.record("safety_policy.put", name, body.model_dump(mode="json"))
    response.status_code = 201 if created else 200
    return PolicyOut.of(stored)


@router.delete("/policies/{name}")
async def delete_policy(name: PolicyName, admin: PolicyAdminDep) -> PolicyDeleted:
    """A configured policy of the same name applies again; tenants naming a policy that no
    longer exists fail their requests (500) until they are given another."""
    if not await admin.policies.delete(name):
        raise _not_found(name)
    await admin.record("safety_policy.delete", name, {})
    return PolicyDeleted(name=name, deleted=True)
