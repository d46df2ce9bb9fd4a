"""OpenTelemetry traces: one span per inference request, with the GenAI conventions, carried
into vLLM through W3C `traceparent`.

The hot path sees a small interface: `Tracing.begin` at the request's arrival, then, anywhere
below it, `current()`, `event()` and `span()`, which find the request's trace in a context
variable (so the authenticator, the fair queue, the adapter loader and the safety event bus
need no new parameters), and `RequestTrace.finish` at the app's error boundary. The sampling
decision is taken here, before the OpenTelemetry SDK is touched: a request that is not
sampled costs a header scan and, for a new trace, one random number and a formatted header
(sent to vLLM so that it follows the same decision); no SDK object is made for it. Sampled
spans are exported by the SDK's `BatchSpanProcessor`, in its own thread, never on the request
path.

Configuration: the `tracing` settings, else the standard OTEL_* environment variables
(exporter endpoint and headers, service name, resource attributes, sampler); tracing is off
while no OTLP endpoint is set anywhere, or with OTEL_SDK_DISABLED=true.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

import orjson
from opentelemetry import trace as otel
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TraceState,
)
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from gateway.core.asgi import Scope
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.core.request import RequestTexts
from gateway.settings import TracingSettings

if TYPE_CHECKING:
    from gateway.safety.events import SafetyEvent

Attributes = Mapping[str, AttributeValue]
DEFAULT_SERVICE_NAME = "vllm-gateway"
# The sampler names of the OTEL_TRACES_SAMPLER specification the gateway honours:
# name -> (parent-based, ratio for new traces; None: OTEL_TRACES_SAMPLER_ARG).
_SAMPLERS: dict[str, tuple[bool, float | None]] = {
    "always_on": (False, 1.0),
    "always_off": (False, 0.0),
    "traceidratio": (False, None),
    "parentbased_always_on": (True, 1.0),
    "parentbased_always_off": (True, 0.0),
    "parentbased_traceidratio": (True, None),
}
# gen_ai.operation.name per surface, where the conventions name the operation; other
# surfaces (tokenize, rerank, audio...) go by their own name.
_OPERATIONS = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_MAX_CONTENT_CHARS = 16_384  # captured prompt or answer, per request
_SAMPLED = 0x01

_current: ContextVar[RequestTrace | None] = ContextVar("gateway_request_trace", default=None)
_NO_SPAN: AbstractContextManager[None] = nullcontext()


def current() -> RequestTrace | None:
    """The trace of the request this code runs for, when it is sampled."""
    return _current.get()


def event(name: str, attributes: Attributes | None = None) -> None:
    """A point in time on the current request's span (nothing when it is not sampled)."""
    request_trace = _current.get()
    if request_trace is not None:
        request_trace.event(name, attributes)


def span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[None]:
    """`with span(...)`: a child span of the current request's around something that waits
    (a store read, a queue, an adapter load); a shared no-op when the request is not sampled."""
    request_trace = _current.get()
    return _NO_SPAN if request_trace is None else _ChildSpan(request_trace, name, attributes)


def failed(error: GatewayError) -> None:
    """The request failed with `error` after its answer began (a stream cut): its span's
    error.type."""
    request_trace = _current.get()
    if request_trace is not None:
        request_trace.failed(error)


def safety_action(safety_event: SafetyEvent) -> None:
    """A content-filter action (the safety engine's event bus), as an event with its rule."""
    request_trace = _current.get()
    if request_trace is not None:
        request_trace.event(
            "gateway.safety",
            {
                "gateway.safety.rule": safety_event.rule,
                "gateway.safety.policy": safety_event.policy,
                "gateway.safety.direction": safety_event.direction,
                "gateway.safety.action": safety_event.action,
            },
        )


class Tracing:
    """The process's tracer (a component: `start` sets up the exporter, `close` flushes it).

    `begin` decides each request's sampling: parent-based (a client's sampled flag is kept)
    and, for new traces, by `ratio`. `environ`: where the gateway reads the OTEL_* variables
    it decides by (the SDK reads its own, the exporter's and the resource's, from the
    process's environment).
    """

    def __init__(self, settings: TracingSettings, environ: Mapping[str, str] = os.environ) -> None:
        self._settings = settings
        self._environ = environ
        self.enabled = _enabled(settings, environ)
        # the sampler is read only when tracing is on: a stray variable cannot stop the gateway
        sampling = _sampling(settings, environ) if self.enabled else (True, 0.0)
        self.parent_based, self.ratio = sampling
        self.capture_content = settings.capture_content
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None

    async def start(self) -> None:
        if not self.enabled:
            return
        # Imported only with tracing on: the exporter pulls in requests and protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _check_protocol(self._environ)
        settings = self._settings
        endpoint = settings.endpoint.rstrip("/") + "/v1/traces" if settings.endpoint else None
        headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers or None)
        self._provider = TracerProvider(resource=self.resource(), sampler=ALWAYS_ON)
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("vllm-gateway")

    def resource(self) -> Resource:
        """The settings' attributes over OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; the
        service is "vllm-gateway" unless one of them names it."""
        attributes: dict[str, AttributeValue] = dict(self._settings.resource_attributes)
        if self._settings.service_name:
            attributes[SERVICE_NAME] = self._settings.service_name
        resource = Resource.create(attributes)
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        return resource

    async def close(self) -> None:
        """Export what is still queued (the SDK's shutdown blocks: off the event loop)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)
            self._provider = self._tracer = None

    def begin(self, ctx: RequestContext, scope: Scope, surface: str) -> RequestTrace | None:
        """At an inference request's arrival: its trace when sampled (the current one from
        now on, until `RequestTrace.leave`), else None. Either way `ctx.trace_headers` gets
        what vLLM is to receive: this decision, or with tracing off the client's headers as
        they came, so a trace the gateway takes no part in still reaches vLLM."""
        traceparent = tracestate = None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                traceparent = value
            elif key == b"tracestate":
                tracestate = value
        if not self.enabled or self._tracer is None:
            if traceparent is not None:
                ctx.trace_headers = _forwarded(traceparent, tracestate)
            return None
        parent = _parse_traceparent(traceparent) if traceparent is not None else None
        if parent is not None and self.parent_based:
            sampled = bool(parent[2] & _SAMPLED)
        else:
            sampled = self.ratio >= 1.0 or random.random() < self.ratio
        if not sampled:  # vLLM is told so (its sampler follows its parent), in the same trace
            if parent is not None:
                trace_id, span_id = parent[0], parent[1]
            else:
                trace_id, span_id = random.getrandbits(128) or 1, random.getrandbits(64) or 1
            ctx.trace_headers = {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-00"}
            if parent is not None and tracestate:
                ctx.trace_headers["tracestate"] = tracestate.decode("latin-1")
            return None
        route = scope["path"]
        return RequestTrace(self, self._tracer, ctx, surface, route, parent, tracestate)


class RequestTrace:
    """A sampled request's span (SERVER, from its arrival to its last byte), its children
    and events."""

    __slots__ = (
        "_answer",
        "_error_type",
        "_offset_ns",
        "_token",
        "_tracer",
        "_upstream",
        "_upstream_status",
        "captures_content",
        "operation",
        "root",
    )

    def __init__(
        self,
        tracing: Tracing,
        tracer: Tracer,
        ctx: RequestContext,
        surface: str,
        route: str,
        parent: tuple[int, int, int] | None,
        tracestate: bytes | None,
    ) -> None:
        self._tracer = tracer
        self._offset_ns = time.time_ns() - time.perf_counter_ns()
        self.operation = _OPERATIONS.get(surface, surface)
        self.captures_content = tracing.capture_content
        self._error_type: str | None = None
        self._upstream: otel.Span | None = None
        self._upstream_status = 0
        self._answer: ContentCapture | None = None
        self.root = tracer.start_span(
            self.operation,
            context=_parent_context(parent, tracestate),
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": self.operation,
                "gen_ai.provider.name": "vllm",
                "http.request.method": "POST",
                "http.route": route,
                "gateway.request.id": ctx.request_id,
            },
            start_time=self._ns(ctx.started),
        )
        span_context = self.root.get_span_context()
        ctx.trace_id = f"{span_context.trace_id:032x}"
        ctx.trace_headers = _headers_of(span_context)
        ctx.extra_headers.append((b"traceparent", ctx.trace_headers["traceparent"].encode()))
        self._token: Token[RequestTrace | None] | None = _current.set(self)

    def _ns(self, perf_seconds: float) -> int:
        return int(perf_seconds * 1e9) + self._offset_ns

    def leave(self) -> None:
        """The request's own code is done (a background run goes on with its copy)."""
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        self.root.add_event(name, attributes)

    def child(
        self, name: str, started: float, attributes: Attributes | None = None, error: str = ""
    ) -> None:
        """A finished child span from `started` (perf_counter) to now."""
        child = self._tracer.start_span(
            name,
            context=otel.set_span_in_context(self.root),
            attributes=attributes,
            start_time=self._ns(started),
        )
        if error:
            child.set_attribute("error.type", error)
            child.set_status(Status(StatusCode.ERROR))
        child.end()

    def failed(self, error: GatewayError) -> None:
        self._error_type = error_type(error)

    def upstream_started(self, ctx: RequestContext) -> None:
        """The CLIENT span of the call to vLLM, whose context vLLM's own span continues."""
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": "vllm",
            "http.request.method": "POST",
        }
        if ctx.upstream_model:
            attributes["gen_ai.request.model"] = ctx.upstream_model
        if ctx.base_model:
            attributes["gateway.upstream.base_model"] = ctx.base_model
        if ctx.adapter:
            attributes["gateway.upstream.adapter"] = ctx.adapter
        name = f"{self.operation} {ctx.upstream_model}" if ctx.upstream_model else self.operation
        self._upstream = upstream = self._tracer.start_span(
            name,
            context=otel.set_span_in_context(self.root),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        ctx.trace_headers = _headers_of(upstream.get_span_context())

    def upstream_answered(self, status: int) -> None:
        """vLLM's response headers are in: its first byte."""
        self._upstream_status = status
        if self._upstream is not None:
            self._upstream.add_event(
                "gateway.upstream.first_byte", {"http.response.status_code": status}
            )

    def upstream_finished(self, ctx: RequestContext) -> None:
        """The relay is done with vLLM (answer relayed, cut, or no answer at all)."""
        upstream, self._upstream = self._upstream, None
        if upstream is None:
            return
        if ctx.replica:
            address, port = _address(ctx.replica)
            upstream.set_attributes(
                {"server.address": address, "server.port": port, "url.full": ctx.replica}
            )
        if self._upstream_status:
            upstream.set_attribute("http.response.status_code", self._upstream_status)
        if not self._upstream_status or self._upstream_status >= 500:
            upstream.set_attribute(
                "error.type", str(self._upstream_status or self._error_type or "no_answer")
            )
            upstream.set_status(Status(StatusCode.ERROR))
        upstream.end()

    def capture_prompt(self, texts: RequestTexts) -> None:
        """Content capture: the prompt as it goes to vLLM (the tenant's redaction applied)."""
        messages = [{"role": slot.role, "content": slot.text} for slot in texts.slots]
        self.root.set_attribute(
            "gen_ai.input.messages", orjson.dumps(messages).decode()[:_MAX_CONTENT_CHARS]
        )

    def answer_capture(self) -> ContentCapture:
        """Content capture: a chunk filter that keeps the answer as relayed (after the
        tenant's output guard, so redacted as the client sees it)."""
        self._answer = ContentCapture()
        return self._answer

    def finish(self, ctx: RequestContext, seconds: float) -> None:
        """The request's last byte is out (or it was refused): its attributes, and the end."""
        root = self.root
        attributes: dict[str, AttributeValue] = {
            "http.response.status_code": ctx.status,
            "gateway.stream": ctx.stream,
            "gateway.overhead_ms": round(ctx.final_overhead_ms(), 3),
        }
        if ctx.public_model:
            attributes["gen_ai.request.model"] = ctx.public_model
            root.update_name(f"{self.operation} {ctx.public_model}")
        if ctx.upstream_model:
            attributes["gateway.upstream.model"] = ctx.upstream_model
        if ctx.tenant_id:
            attributes["gateway.tenant.id"] = ctx.tenant_id
        if ctx.tenant_name:
            attributes["gateway.tenant.name"] = ctx.tenant_name
        if ctx.key_id:
            attributes["gateway.key.id"] = ctx.key_id
        usage = ctx.usage or {}
        prompt_tokens, completion_tokens = (
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
        )
        if isinstance(prompt_tokens, int):
            attributes["gen_ai.usage.input_tokens"] = prompt_tokens
        if isinstance(completion_tokens, int):
            attributes["gen_ai.usage.output_tokens"] = completion_tokens
        if ctx.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = (ctx.finish_reason,)
        if self._answer is not None and self._answer.text:
            attributes["gateway.output.content"] = self._answer.text
        error = self._error_type
        if error is None and ctx.status >= 400:
            error = str(ctx.status)
        if error is not None:
            attributes["error.type"] = error
        root.set_attributes(attributes)
        end = self._ns(ctx.started + seconds)
        if ctx.stream and ctx.first_event_at is not None:
            root.add_event("gateway.stream.first_event", timestamp=self._ns(ctx.first_event_at))
            events = {"gateway.stream.events": ctx.streamed_events}
            if ctx.status == 200:
                root.add_event("gateway.stream.end", events, timestamp=end)
            else:
                root.add_event("gateway.stream.cut", {**events, "error.type": error or ""}, end)
        if ctx.status >= 500 or ctx.status == 0:
            root.set_status(Status(StatusCode.ERROR))
        root.end(end_time=end)


class ContentCapture:
    """Keeps the first `_MAX_CONTENT_CHARS` of an answer as it is relayed; passes it on as is."""

    __slots__ = ("_parts", "_size")
    ended = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def on_events(self, events: bytes) -> bytes:
        if self._size < _MAX_CONTENT_CHARS:
            self._parts.append(events)
            self._size += len(events)
        return events

    on_whole = on_events

    @property
    def text(self) -> str:
        return b"".join(self._parts).decode(errors="replace")[:_MAX_CONTENT_CHARS]


class _ChildSpan:
    """`span()`'s context manager: a child span timed around the block, failed by its error."""

    __slots__ = ("_attributes", "_name", "_started", "_trace")

    def __init__(self, request_trace: RequestTrace, name: str, attributes: Attributes | None):
        self._trace, self._name, self._attributes = request_trace, name, attributes
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        error = ""
        if isinstance(exc, GatewayError):
            error = error_type(exc)
        elif exc is not None:
            error = type(exc).__name__
        self._trace.child(self._name, self._started, self._attributes, error)


def error_type(error: GatewayError) -> str:
    """error.type for a gateway error: its code when it has a name (rate_limit_exceeded,
    model_not_found), else its type."""
    return error.code if isinstance(error.code, str) else error.type


def _enabled(settings: TracingSettings, environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        settings.endpoint
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _sampling(settings: TracingSettings, environ: Mapping[str, str]) -> tuple[bool, float]:
    """(parent-based, ratio for new traces): the settings' ratio (parent-based), else
    OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else OpenTelemetry's default
    (parentbased_always_on)."""
    if settings.sample_ratio is not None:
        return True, settings.sample_ratio
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER={name!r} is not supported; use one of {', '.join(_SAMPLERS)}"
        )
    parent_based, ratio = _SAMPLERS[name]
    if ratio is None:
        argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = min(1.0, max(0.0, float(argument)))
        except ValueError:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={argument!r} is not a number") from None
    return parent_based, ratio


def _check_protocol(environ: Mapping[str, str]) -> None:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise ValueError(
            f"OTLP protocol {protocol!r}: the gateway exports traces over OTLP/HTTP only "
            "(http/protobuf, port 4318 by convention)"
        )


def _parse_traceparent(value: bytes) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a valid W3C traceparent, else None (the request
    then starts a new trace, as the specification asks)."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags_hex, 16)


def _parent_context(parent: tuple[int, int, int] | None, tracestate: bytes | None) -> Context:
    if parent is None:
        return Context()
    trace_id, span_id, flags = parent
    state = TraceState.from_header([tracestate.decode("latin-1")]) if tracestate else None
    remote = SpanContext(trace_id, span_id, True, TraceFlags(flags & _SAMPLED), state)
    return otel.set_span_in_context(NonRecordingSpan(remote))


def _headers_of(span_context: SpanContext) -> dict[str, str]:
    headers = {
        "traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{span_context.trace_flags:02x}"
    }
    if span_context.trace_state:
        headers["tracestate"] = span_context.trace_state.to_header()
    return headers


def _forwarded(traceparent: bytes, tracestate: bytes | None) -> dict[str, str]:
    headers = {"traceparent": traceparent.decode("latin-1")}
    if tracestate:
        headers["tracestate"] = tracestate.decode("latin-1")
    return headers


def _address(url: str) -> tuple[str, int]:
    """server.address and server.port of a replica's base URL."""
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = authority.rpartition(":")
    if not host or not port.isdigit():
        return authority, 443 if url.startswith("https") else 80
    return host.strip("[]"), int(port)
