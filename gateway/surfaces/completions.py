"""`POST /v1/completions`: a prompt (text or token ids) in, text or a stream of it out."""

from __future__ import annotations

from gateway.core.filters import ChunkFilter
from gateway.safety.runtime import PolicyRuntime
from gateway.surfaces.prompt import PromptSurface


class Completions(PromptSurface):
    path = "/v1/completions"
    name = "completions"
    input_field = "prompt"

    def output_guard(self, policy: PolicyRuntime) -> ChunkFilter | None:
        return policy.output_guard()
