"""/metrics in vLLM's names and labels, rendered from the engine's counters on each scrape.

Like vLLM, the per-engine series carry engine="0" and model_name=<served model>, while
vllm:lora_requests_info carries only max_lora / running_lora_adapters /
waiting_lora_adapters, with the scrape time as its value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from vllm_server.standin.engine import TTFT_BUCKETS, Engine


class EngineCollector(Collector):
    def __init__(self, engine: Engine):
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine, stats = self._engine, self._engine.stats
        labels = ["engine", "model_name"]
        values = ["0", engine.config.served_model_name]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric(values, value)
            return family

        yield gauge("vllm:num_requests_running", "Requests in model execution batches.",
                    stats.running)  # fmt: skip
        yield gauge("vllm:num_requests_waiting", "Requests waiting to be processed.",
                    sum(engine.slots.waiting.values()))  # fmt: skip
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                    engine.kv_cache_usage)  # fmt: skip

        lora = GaugeMetricFamily(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            labels=["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
        )
        lora.add_metric(
            [
                str(engine.config.max_loras),
                ",".join(sorted(engine.slots.waiting)),
                ",".join(sorted(engine.slots.running)),
            ],
            time.time(),
        )
        yield lora

        finished = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*labels, "finished_reason"],
        )
        for reason, count in stats.finished.items():
            finished.add_metric([*values, reason], count)
        yield finished
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                      stats.prompt_tokens)  # fmt: skip
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.",
                      stats.generation_tokens)  # fmt: skip

        cumulative = list(accumulate(stats.ttft_bucket_counts))
        bounds = [*(str(bound) for bound in TTFT_BUCKETS), "+Inf"]
        ttft = HistogramMetricFamily(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            labels=labels,
        )
        ttft.add_metric(values, list(zip(bounds, cumulative, strict=True)), stats.ttft_sum)
        yield ttft


class MetricsEndpoint:
    def __init__(self, engine: Engine):
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(EngineCollector(engine))

    async def scrape(self, _request: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)
