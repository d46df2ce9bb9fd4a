"""Route a request: the public model name -> upstream model (base or adapter) -> replica."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.tenancy.models import ModelRoute


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """The name the client used and the route behind it."""

    public_name: str
    route: ModelRoute

    @property
    def upstream_name(self) -> str:
        """vLLM serves an adapter under its own name, the base model under the served name."""
        return self.route.adapter or self.route.base_model

    def response_rename(self) -> tuple[bytes, bytes] | None:
        """The bytes to swap in vLLM's answers so the client sees the name it asked for."""
        if self.upstream_name == self.public_name:
            return None
        return (
            b'"model":"' + self.upstream_name.encode() + b'"',
            b'"model":"' + self.public_name.encode() + b'"',
        )


@dataclass(frozen=True, slots=True)
class Replica:
    """One vLLM OpenAI server, by its base URL (no trailing slash)."""

    url: str


class Router:
    """Today one replica serves every model; per-tenant adapters and replica choice come here."""

    def __init__(self, replicas: list[Replica]) -> None:
        if not replicas:
            raise ValueError("at least one upstream replica is required")
        self.replicas = replicas

    def route(self, target: ModelTarget | None) -> Replica:
        return self.replicas[0]
