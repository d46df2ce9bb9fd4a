"""`POST /v1/embeddings`: text or token ids in, vectors out (no stream, nothing to guard)."""

from __future__ import annotations

from gateway.core.errors import BadRequest
from gateway.core.request import InferenceRequest
from gateway.limits.estimate import MAX_TOKENS
from gateway.surfaces.prompt import PromptSurface


class Embeddings(PromptSurface):
    path = "/v1/embeddings"
    name = "embeddings"
    input_field = "input"
    tenant_fields = False

    def parse(self, raw: bytes) -> InferenceRequest:
        request = super().parse(raw)
        if request.stream:
            raise BadRequest("Embeddings cannot be streamed.", "stream")
        return request

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        return min(self.estimate_prompt_tokens(request), MAX_TOKENS)  # generates nothing
