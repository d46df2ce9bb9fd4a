"""Tenant policy: which upstream model a caller's public model name means, if it may use it."""

from __future__ import annotations

from gateway.core.errors import BadRequest, GatewayError
from gateway.routing import ModelTarget
from gateway.tenancy.auth import Principal


def model_not_found(name: str) -> GatewayError:
    return GatewayError(
        404, f"The model `{name}` does not exist.", param="model", code="model_not_found"
    )


def resolve_model(principal: Principal, requested: str | None) -> ModelTarget:
    """The caller's model; another tenant's names (or raw adapter names) are simply unknown."""
    name = requested if requested is not None else principal.tenant.default_model
    if name is None:
        raise BadRequest("'model' is required: this API key's tenant has no default.", "model")
    route = principal.models.get(name)
    if route is None:
        raise model_not_found(name)
    return ModelTarget(name, route)
