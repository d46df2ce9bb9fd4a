"""The admin API for stored safety policies, under /admin/v1/safety/policies.

Policies live beside the tenants (same Redis or SQLite file). Every change is audited with
the admin key that made it and announced on the store's invalidation channel, on which every
gateway instance reloads its policies. A stored policy replaces a configured one of the same
name; a tenant (or a key, through `metadata.safety_policy`) names the policy it is under.
The policy store is the gateway's safety engine's (`AdminState.safety_policies`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import DEFAULT_PAGE, Limit, Offset, Page, error_responses
from gateway.admin.state import AdminDep
from gateway.core.errors import BadRequest, NotFoundError
from gateway.safety.policy import NO_POLICY, PolicySpec
from gateway.safety.policy_store import StoredPolicy

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


router = APIRouter(
    prefix=f"{ADMIN_PREFIX}/safety", tags=["safety"], responses=error_responses(400, 401, 404, 503)
)


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"No stored safety policy named '{name}'.", "safety_policy_not_found")


@router.get("/policies")
async def list_policies(
    admin: AdminDep, offset: Offset = 0, limit: Limit = DEFAULT_PAGE
) -> PolicyList:
    """The stored policies by name (those in the settings file are not listed); follow
    `next_offset` for the rest."""
    stored = await admin.state.safety_policies.load_all()
    page = [PolicyOut.of(policy) for policy in stored[offset : offset + limit + 1]]
    return PolicyList.of(page, offset, limit)


@router.get("/policies/{name}")
async def get_policy(name: PolicyName, admin: AdminDep) -> PolicyOut:
    stored = await admin.state.safety_policies.get(name)
    if stored is None:
        raise _not_found(name)
    return PolicyOut.of(stored)


@router.put("/policies/{name}", responses={201: {"model": PolicyOut}})
async def put_policy(
    name: PolicyName, body: PolicySpec, admin: AdminDep, response: Response
) -> PolicyOut:
    """Create (201) or replace (200) the policy; every gateway instance applies it at once."""
    if name == NO_POLICY:
        raise BadRequest(f"'{NO_POLICY}' is reserved: it means no policy.", param="name")
    stored, created = await admin.state.safety_policies.put(name, body)
    await admin.record("safety_policy.put", name, body.model_dump(mode="json"), invalidate=True)
    response.status_code = 201 if created else 200
    return PolicyOut.of(stored)


@router.delete("/policies/{name}")
async def delete_policy(name: PolicyName, admin: AdminDep) -> PolicyDeleted:
    """A configured policy of the same name applies again; tenants naming a policy that no
    longer exists fail their requests (500) until they are given another."""
    if not await admin.state.safety_policies.delete(name):
        raise _not_found(name)
    await admin.record("safety_policy.delete", name, {}, invalidate=True)
    return PolicyDeleted(name=name, deleted=True)
