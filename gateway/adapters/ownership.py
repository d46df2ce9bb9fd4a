"""Who may route to a registered adapter: its owning tenant only (or anyone, when shared).

Tenant policy already confines a caller to its tenant's model map, so the one remaining way
to reach another tenant's adapter is an admin mapping a model onto it. Both sides of that
mapping are checked: a tenant's map may not name an adapter registered to another tenant
(or for another base model), and an adapter may not be registered to a tenant while another
tenant's map names it. Adapters vLLM was started with (not registered) are the admin's to
map freely: the gateway knows nothing of their owner.
"""

from __future__ import annotations

from gateway.adapters.models import AdapterRecord
from gateway.adapters.registry import AdapterRegistry
from gateway.core.errors import BadRequest, ConflictError
from gateway.tenancy.models import Tenant


async def check_tenant_routes(registry: AdapterRegistry, tenant: Tenant) -> None:
    """400 when one of `tenant`'s models maps to a registered adapter it may not use."""
    for public_name, route in tenant.models.items():
        if route.adapter is None:
            continue
        record = await registry.get(route.adapter)
        if record is None:
            continue
        param = f"models.{public_name}.adapter"
        if record.tenant_id is not None and record.tenant_id != tenant.id:
            raise BadRequest(
                f"Model '{public_name}' maps to adapter '{record.name}', which belongs to "
                "another tenant.",
                param,
                "adapter_not_owned",
            )
        if record.base_model != route.base_model:
            raise BadRequest(
                f"Model '{public_name}' maps adapter '{record.name}' onto base model "
                f"'{route.base_model}', but it is registered for '{record.base_model}'.",
                param,
                "adapter_base_model_mismatch",
            )


def tenants_using(tenants: list[Tenant], adapter: str) -> list[Tenant]:
    return [
        tenant
        for tenant in tenants
        if any(route.adapter == adapter for route in tenant.models.values())
    ]


def check_registration(record: AdapterRecord, tenants: list[Tenant]) -> None:
    """409 when a tenant other than the owner maps a model to `record`, or maps it onto
    another base model: registering it must not hand it to them, or break them."""
    for tenant in tenants_using(tenants, record.name):
        if record.tenant_id is not None and tenant.id != record.tenant_id:
            raise ConflictError(
                f"Tenant '{tenant.name}' ({tenant.id}) maps a model to adapter "
                f"'{record.name}': it cannot belong to another tenant.",
                "adapter_in_use",
                "tenant_id",
            )
        for public_name, route in tenant.models.items():
            if route.adapter == record.name and route.base_model != record.base_model:
                raise ConflictError(
                    f"Tenant '{tenant.name}' maps model '{public_name}' to adapter "
                    f"'{record.name}' on base model '{route.base_model}'.",
                    "adapter_in_use",
                    "base_model",
                )
