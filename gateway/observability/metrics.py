"""Every Prometheus metric the gateway exports, defined once, with one function per event.

Callers never touch the metric objects: they call the function for what happened, which keeps
label names and values in one place and every label bounded (see labels.py): tenants by name,
models by the public name that passed tenant policy, replicas by base URL, statuses by code.
Key ids and raw model strings from clients are never labels.

With several uvicorn workers, prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set up by exposition.metrics_process) makes each worker write its samples to shared files
that /metrics merges; the in-flight gauge then sums live workers only.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from gateway.core.context import RequestContext
from gateway.observability.labels import BoundedValues, status_label

PREFIX = "vllm_gateway_"
_tenants = BoundedValues(1000)
_models = BoundedValues(200)
_replicas = BoundedValues(100)
_names = BoundedValues(200)  # limit, rule and component names: fixed by code or config

# LLM requests run from milliseconds (errors, short completions) to minutes (long streams).
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 20)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1)

REQUESTS = Counter(
    PREFIX + "requests",
    "Finished /v1 requests by tenant, public model, API surface and HTTP status.",
    ["tenant", "model", "surface", "status"],
)
REQUEST_DURATION = Histogram(
    PREFIX + "request_duration_seconds",
    "Time from the request's arrival to its last byte, by public model.",
    ["model"],
    buckets=_DURATION_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    PREFIX + "time_to_first_token_seconds",
    "Streamed requests: time from arrival to the first event sent to the client.",
    ["model"],
    buckets=_TTFT_BUCKETS,
)
OVERHEAD = Histogram(
    PREFIX + "overhead_seconds",
    "Time spent in the gateway itself, not waiting for vLLM.",
    ["stream"],
    buckets=_OVERHEAD_BUCKETS,
)
PROMPT_TOKENS = Counter(
    PREFIX + "prompt_tokens",
    "Prompt tokens vLLM reported, by tenant and model.",
    ["tenant", "model"],
)
COMPLETION_TOKENS = Counter(
    PREFIX + "completion_tokens",
    "Completion tokens vLLM reported, by tenant and model.",
    ["tenant", "model"],
)
UPSTREAM_IN_FLIGHT = Gauge(
    PREFIX + "upstream_in_flight",
    "Requests sent to a vLLM replica and not yet finished.",
    ["replica"],
    multiprocess_mode="livesum",
)
UPSTREAM_REQUESTS = Counter(
    PREFIX + "upstream_requests",
    "Requests to vLLM replicas by outcome (error: no valid answer, timeout or 5xx).",
    ["replica", "outcome"],
)
RATE_LIMIT_REJECTIONS = Counter(
    PREFIX + "rate_limit_rejections",
    "Requests refused with 429, by the limit that refused them and tenant.",
    ["limit", "tenant"],
)
RATE_LIMIT_EARLY = Counter(
    PREFIX + "rate_limit_early_dispatches",
    "Requests sent to vLLM before Redis admitted them, far from every limit (sent), and those "
    "of them Redis then refused, cut off before the client saw an answer (refused).",
    ["outcome"],
)
_EARLY_SENT = RATE_LIMIT_EARLY.labels("sent")
_EARLY_REFUSED = RATE_LIMIT_EARLY.labels("refused")
SAFETY_ACTIONS = Counter(
    PREFIX + "safety_actions",
    "Safety rule actions, by rule, direction (input/output) and action taken.",
    ["rule", "direction", "action"],
)
ADAPTER_OPERATIONS = Counter(
    PREFIX + "adapter_operations",
    "LoRA adapter loads and unloads on vLLM replicas, by outcome.",
    ["replica", "operation", "outcome"],
)
REDIS_ERRORS = Counter(
    PREFIX + "redis_errors", "Failed Redis calls, by the operation that failed.", ["operation"]
)
REDIS_FAIL_OPEN = Counter(
    PREFIX + "redis_fail_open",
    "Requests let through without Redis because the failure policy is open, by component.",
    ["component"],
)
KEY_CACHE_LOOKUPS = Counter(
    PREFIX + "key_cache_lookups",
    "API key lookups answered from process memory (hit), the store (miss), or from memory "
    "past their TTL because the store is unavailable (stale).",
    ["result"],
)
STORE_FAILURES = Counter(
    PREFIX + "store_failures",
    "Store calls that failed because the store could not answer, by store and kind "
    "(timeout, connection, loading, readonly, failover, out_of_memory, locked, io).",
    ["store", "kind"],
)
STORE_AVAILABLE = Gauge(
    PREFIX + "store_available",
    "1 while this process sees the store answer, 0 while it is unavailable, by store.",
    ["store"],
    multiprocess_mode="livemin",
)
FAIR_QUEUE_BUDGET = Gauge(
    PREFIX + "fair_queue_budget",
    "Requests this instance may have at vLLM at once: its processes' shares of the fair "
    "queue's budget.",
    multiprocess_mode="livesum",
)
FAIR_QUEUE_DEPTH = Gauge(
    PREFIX + "fair_queue_depth",
    "Requests waiting in the fair queue for an upstream slot, by tenant.",
    ["tenant"],
    multiprocess_mode="livesum",
)
FAIR_QUEUE_WAIT = Histogram(
    PREFIX + "fair_queue_wait_seconds",
    "How long requests that had to queue waited for a slot (timed-out ones too), by tenant.",
    ["tenant"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FAIR_QUEUE_TIMEOUTS = Counter(
    PREFIX + "fair_queue_timeouts",
    "Requests refused because they waited in the fair queue past its timeout, by tenant.",
    ["tenant"],
)
ISOLATION_REQUESTS = Counter(
    PREFIX + "isolation_requests",
    "Requests sent to vLLM, by the tier they ran at and their cache-salt mode.",
    ["tier", "cache_salt_mode"],
)


Metric = TypeVar("Metric", Counter, Gauge, Histogram)


class _Children(Generic[Metric]):
    """A metric's series by label values, each found once: prometheus-client's `labels`
    checks its arguments and takes a lock on every call, and these are called on every
    request. As bounded as the labels are (labels.py)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Metric) -> None:
        self._metric: Metric = metric
        self._children: dict[tuple[str, ...], Metric] = {}

    def __call__(self, *values: str) -> Metric:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_requests = _Children(REQUESTS)
_request_duration = _Children(REQUEST_DURATION)
_time_to_first_token = _Children(TIME_TO_FIRST_TOKEN)
_overhead = _Children(OVERHEAD)
_prompt_tokens = _Children(PROMPT_TOKENS)
_completion_tokens = _Children(COMPLETION_TOKENS)
_upstream_in_flight = _Children(UPSTREAM_IN_FLIGHT)
_upstream_requests = _Children(UPSTREAM_REQUESTS)


def observe_request(ctx: RequestContext, seconds: float) -> None:
    """Record one finished /v1 request; called once, after its last byte."""
    tenant = _tenants(ctx.tenant_name)
    model = _models(ctx.public_model)
    _requests(tenant, model, ctx.surface, status_label(ctx.status)).inc()
    # a sampled request's trace id links its histogram bucket to its trace (OpenMetrics)
    exemplar = {"trace_id": ctx.trace_id} if ctx.trace_id is not None else None
    _request_duration(model).observe(seconds, exemplar)
    if ctx.stream and ctx.first_event_at is not None:
        _time_to_first_token(model).observe(ctx.first_event_at - ctx.started, exemplar)
    _overhead("true" if ctx.stream else "false").observe(ctx.final_overhead_ms() / 1000.0)
    usage = ctx.usage
    if usage:
        prompt_tokens = usage.get("prompt_tokens")
        if isinstance(prompt_tokens, int) and prompt_tokens > 0:
            _prompt_tokens(tenant, model).inc(prompt_tokens)
        completion_tokens = usage.get("completion_tokens")
        if isinstance(completion_tokens, int) and completion_tokens > 0:
            _completion_tokens(tenant, model).inc(completion_tokens)


def upstream_started(replica: str) -> None:
    _upstream_in_flight(_replicas(replica)).inc()


def upstream_finished(replica: str, error: bool) -> None:
    label = _replicas(replica)
    _upstream_in_flight(label).dec()
    _upstream_requests(label, "error" if error else "ok").inc()


def rate_limit_rejected(limit: str, tenant: str | None) -> None:
    """`limit`: the limit's name as the limiter knows it (requests_per_minute, ...)."""
    RATE_LIMIT_REJECTIONS.labels(_names(limit), _tenants(tenant)).inc()


def rate_limit_early(refused: bool) -> None:
    (_EARLY_REFUSED if refused else _EARLY_SENT).inc()


def safety_action(rule: str, direction: str, action: str) -> None:
    """`direction`: "input" or "output"; `action`: what was done (block, redact, flag)."""
    SAFETY_ACTIONS.labels(_names(rule), direction, action).inc()


def adapter_operation(replica: str, operation: str, ok: bool) -> None:
    """`operation`: "load" or "unload"."""
    ADAPTER_OPERATIONS.labels(_replicas(replica), operation, "ok" if ok else "error").inc()


def redis_error(operation: str) -> None:
    REDIS_ERRORS.labels(_names(operation)).inc()


def redis_fail_open(component: str) -> None:
    REDIS_FAIL_OPEN.labels(_names(component)).inc()


_KEY_CACHE_HIT = KEY_CACHE_LOOKUPS.labels("hit")  # bound once: called on every request
_KEY_CACHE_MISS = KEY_CACHE_LOOKUPS.labels("miss")
_KEY_CACHE_STALE = KEY_CACHE_LOOKUPS.labels("stale")


def key_cache_lookup(hit: bool) -> None:
    (_KEY_CACHE_HIT if hit else _KEY_CACHE_MISS).inc()


def key_served_stale() -> None:
    _KEY_CACHE_STALE.inc()


def store_failure(store: str, kind: str) -> None:
    STORE_FAILURES.labels(_names(store), kind).inc()


def store_available(store: str, available: bool) -> None:
    STORE_AVAILABLE.labels(_names(store)).set(1 if available else 0)


def fair_queue_budget(slots: int) -> None:
    FAIR_QUEUE_BUDGET.set(slots)


def fair_queue_entered(tenant: str) -> None:
    FAIR_QUEUE_DEPTH.labels(_tenants(tenant)).inc()


def fair_queue_left(tenant: str, waited_s: float, timed_out: bool) -> None:
    """A queued request got its slot, timed out, or was cancelled while it waited."""
    label = _tenants(tenant)
    FAIR_QUEUE_DEPTH.labels(label).dec()
    FAIR_QUEUE_WAIT.labels(label).observe(waited_s)
    if timed_out:
        FAIR_QUEUE_TIMEOUTS.labels(label).inc()


def isolation_applied(tier: str, cache_salt_mode: str) -> None:
    """`cache_salt_mode`: "isolated", "shared" or "off"."""
    ISOLATION_REQUESTS.labels(_names(tier), cache_salt_mode).inc()
