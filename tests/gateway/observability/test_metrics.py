"""The recording functions, read back from prometheus-client's registry of this process."""

from __future__ import annotations

import time
import uuid

from prometheus_client import REGISTRY

from gateway.core.context import RequestContext
from gateway.observability import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def finished_request(tenant: str, model: str | None, status: int, stream: bool) -> RequestContext:
    ctx = RequestContext(uuid.uuid4().hex)
    ctx.started = time.perf_counter() - 0.5
    ctx.upstream_seconds = 0.4
    ctx.tenant_name, ctx.key_id = tenant, "key_secretish"
    ctx.public_model, ctx.status, ctx.stream = model, status, stream
    ctx.surface = "chat.completions"
    ctx.usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    if stream:
        ctx.first_event_at = ctx.started + 0.25
    return ctx


def test_a_streamed_request_records_every_series() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    metrics.observe_request(finished_request(tenant, "tenant-a", 200, stream=True), 0.5)
    ok = {"tenant": tenant, "model": "tenant-a", "surface": "chat.completions", "status": "200"}
    assert sample("vllm_gateway_requests_total", **ok) == 1
    assert sample("vllm_gateway_prompt_tokens_total", tenant=tenant, model="tenant-a") == 7
    assert sample("vllm_gateway_completion_tokens_total", tenant=tenant, model="tenant-a") == 3
    ttft_sum = sample("vllm_gateway_time_to_first_token_seconds_sum", model="tenant-a")
    assert ttft_sum >= 0.25
    # 0.25 s falls in the 0.3 bucket, not the 0.2 one: the histogram got the right value
    assert sample("vllm_gateway_time_to_first_token_seconds_bucket", model="tenant-a", le="0.2") < (
        sample("vllm_gateway_time_to_first_token_seconds_bucket", model="tenant-a", le="0.3")
    )


def test_whole_requests_have_no_ttft_and_overhead_excludes_upstream_time() -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    overhead_before = sample("vllm_gateway_overhead_seconds_sum", stream="false")
    metrics.observe_request(finished_request("acme", model, 200, stream=False), 0.5)
    assert sample("vllm_gateway_time_to_first_token_seconds_count", model=model) == 0
    assert sample("vllm_gateway_request_duration_seconds_count", model=model) == 1
    assert sample("vllm_gateway_request_duration_seconds_sum", model=model) == 0.5
    overhead = sample("vllm_gateway_overhead_seconds_sum", stream="false") - overhead_before
    assert 0.09 < overhead < 0.5  # about 0.5 s elapsed minus 0.4 s upstream


def test_requests_without_a_resolved_model_or_tenant_are_unknown() -> None:
    refused = {"tenant": "unknown", "model": "unknown", "surface": "responses", "status": "401"}
    before = sample("vllm_gateway_requests_total", **refused)
    ctx = RequestContext("r")
    ctx.status, ctx.surface = 401, "responses"
    metrics.observe_request(ctx, 0.01)
    after = sample("vllm_gateway_requests_total", **refused)
    assert after - before == 1


def test_key_ids_never_become_labels() -> None:
    metrics.observe_request(finished_request("acme", "base", 200, stream=False), 0.1)
    for family in REGISTRY.collect():
        for series in family.samples:
            assert "key_secretish" not in series.labels.values()


def test_in_flight_rises_and_falls_and_errors_count_by_replica() -> None:
    replica = f"http://10.0.0.{uuid.uuid4().int % 250}:8000"
    metrics.upstream_started(replica)
    metrics.upstream_started(replica)
    assert sample("vllm_gateway_upstream_in_flight", replica=replica) == 2
    metrics.upstream_finished(replica, error=False)
    metrics.upstream_finished(replica, error=True)
    assert sample("vllm_gateway_upstream_in_flight", replica=replica) == 0
    assert sample("vllm_gateway_upstream_requests_total", replica=replica, outcome="ok") == 1
    assert sample("vllm_gateway_upstream_requests_total", replica=replica, outcome="error") == 1


def test_component_counters() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    metrics.rate_limit_rejected("tokens_per_minute", tenant)
    assert (
        sample("vllm_gateway_rate_limit_rejections_total", limit="tokens_per_minute", tenant=tenant)
        == 1
    )
    rule = f"rule-{uuid.uuid4().hex[:8]}"
    metrics.safety_action(rule, "output", "redact")
    assert (
        sample("vllm_gateway_safety_actions_total", rule=rule, direction="output", action="redact")
        == 1
    )
    replica = f"http://{uuid.uuid4().hex[:8]}:8000"
    metrics.adapter_operation(replica, "load", ok=True)
    metrics.adapter_operation(replica, "unload", ok=False)
    assert (
        sample(
            "vllm_gateway_adapter_operations_total", replica=replica, operation="load", outcome="ok"
        )
        == 1
    )
    assert (
        sample(
            "vllm_gateway_adapter_operations_total",
            replica=replica,
            operation="unload",
            outcome="error",
        )
        == 1
    )
    operation = f"op-{uuid.uuid4().hex[:8]}"
    metrics.redis_error(operation)
    metrics.redis_fail_open(operation)
    assert sample("vllm_gateway_redis_errors_total", operation=operation) == 1
    assert sample("vllm_gateway_redis_fail_open_total", component=operation) == 1
    hits = sample("vllm_gateway_key_cache_lookups_total", result="hit")
    metrics.key_cache_lookup(hit=True)
    metrics.key_cache_lookup(hit=False)
    assert sample("vllm_gateway_key_cache_lookups_total", result="hit") == hits + 1
