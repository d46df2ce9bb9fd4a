"""Tenant policy: which upstream model a caller's public model name means, if it may use it."""

from __future__ import annotations

from gateway.core.errors import BadRequest, NotFoundError
from gateway.routing import ModelTarget
from gateway.tenancy.auth import Principal


def model_not_found(name: str) -> NotFoundError:
    return NotFoundError(f"The model `{name}` does not exist.", "model_not_found", "model")


def resolve_model(principal: Principal, requested: str | None) -> ModelTarget:
    """The caller's model; another tenant's names (or raw adapter names) are simply unknown."""
    name = requested if requested is not None else principal.tenant.default_model
    if name is None:
        raise BadRequest("'model' is required: this API key's tenant has no default.", "model")
    route = principal.models.get(name)
    if route is None:
        raise model_not_found(name)
    return ModelTarget(name, route)
