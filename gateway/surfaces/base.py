"""The codec protocol every API surface implements (`Surface`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from gateway.core.asgi import Headers
from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.filters import ChunkFilter
from gateway.core.request import InferenceRequest, RequestTexts
from gateway.safety.runtime import PolicyRuntime
from gateway.upstream.client import as_openai_error

# vLLM's server flags for tool calling, as its errors name them when they are not set.
_TOOL_FLAGS = (b"--tool-call-parser", b"--enable-auto-tool-choice")


class Surface(ABC):
    """One API's shapes. Stateless: one instance serves every request of its route."""

    path: str  # a class attribute, or set per instance by a codec serving several paths
    # The label metrics, the access log and the ledger show (e.g. "chat.completions").
    name: ClassVar[str]
    # vLLM's cache_salt and priority apply (not to pooling requests such as embeddings).
    tenant_fields: ClassVar[bool] = True
    # The body is a file upload (multipart/form-data: audio), read up to
    # `server.max_audio_bytes` instead of `server.max_body_bytes`.
    uploads: ClassVar[bool] = False
    # The gateway keeps its answers (the Responses API's store, previous_response_id and
    # background: gateway/surfaces/responses_state.py).
    keeps_state: ClassVar[bool] = False

    @abstractmethod
    def parse(self, raw: bytes) -> InferenceRequest:
        """Read what the gateway must trust (model, stream, token limits, the input's shape);
        raise `BadRequest` naming the field. Full validation is vLLM's job."""

    def parse_request(self, raw: bytes, content_type: bytes | None) -> InferenceRequest:
        """The body with its content-type header, as the pipeline reads it: `parse`, since
        vLLM reads its JSON routes' bodies as JSON whatever the header says; a multipart
        surface takes its boundary from the header."""
        return self.parse(raw)

    @abstractmethod
    def texts(self, request: InferenceRequest) -> RequestTexts:
        """The texts the input policy reads and may rewrite in place."""

    @abstractmethod
    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        """What to reserve: the prompt's estimate plus the most the request may generate."""

    @abstractmethod
    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        """The prompt alone: what a stream cut before its usage is charged for its input."""

    @abstractmethod
    def upstream_body(self, request: InferenceRequest, upstream_model: str | None) -> bytes:
        """The bytes for vLLM: the model renamed, what the gateway needs asked for."""

    @abstractmethod
    def usage_filter(self, ctx: RequestContext) -> ChunkFilter:
        """The filter that finds the answer's usage and records it in `ctx.usage` (as
        prompt_tokens / completion_tokens / total_tokens)."""

    def output_guard(self, policy: PolicyRuntime) -> ChunkFilter | None:
        """The policy's output guard for this surface's answers; None: nothing to guard."""
        return None

    @abstractmethod
    def stream_finished(self, last_events: bytes) -> bool:
        """True when the last events relayed end the stream as the API ends it."""

    @abstractmethod
    def stream_error(self, error: GatewayError) -> bytes:
        """The SSE event that ends a broken stream, telling the client why."""

    def error_response(self, error: GatewayError) -> tuple[int, bytes]:
        """The status and body of an error in this surface's format (OpenAI's by default)."""
        return error.status, error.body()

    def upstream_error(self, status: int, body: bytes) -> GatewayError | None:
        """vLLM's error answer as an error to raise; None: relay its bytes as they are (by
        default, those already in OpenAI's format). An error that names vLLM's server flags
        for tools (``tool_choice="required" requires --tool-call-parser to be set``) tells
        the tenant what it means for them instead."""
        if status == 400 and any(flag in body for flag in _TOOL_FLAGS):
            return BadRequest(
                "Tool calling is not enabled for this model.",
                "tool_choice",
                "tool_calling_not_enabled",
            )
        return as_openai_error(status, body)

    def limit_headers(self, headers: Headers) -> Headers:
        """The limiter's x-ratelimit-* (and retry-after) headers as this surface's clients
        read them (OpenAI's names by default)."""
        return headers


class UsageFilter:
    """The base of each surface's usage filter: it records what it finds in `ctx.usage` (in
    the chat shape the limits and the ledger read) and never ends a stream."""

    __slots__ = ("_ctx",)
    ended = False

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
