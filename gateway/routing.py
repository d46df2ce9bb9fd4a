"""Route a request to a vLLM replica (model -> replica + adapter)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.body import InferenceRequest


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

    def route(self, request: InferenceRequest) -> Replica:
        return self.replicas[0]
