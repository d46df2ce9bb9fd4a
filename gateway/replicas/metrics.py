"""Read the few gauges routing needs from a vLLM /metrics page.

A line scan instead of a full Prometheus parser: a vLLM page carries hundreds of histogram
lines, and routing needs four series. Names of old and new vLLM releases are both accepted
(`vllm:gpu_cache_usage_perc` became `vllm:kv_cache_usage_perc`).

From `vllm:lora_requests_info` routing takes `max_lora` (the adapter slots) and
`running_lora_adapters` (adapters in a slot right now: a request for one of them needs no
swap). Its `waiting_lora_adapters` adds nothing: those requests are in
`vllm:num_requests_waiting` already, and which adapters a replica holds comes from /v1/models.

The metric needs care: vLLM sets it with `set_to_current_time()` on a label
set that changes with the running adapters, and a Prometheus gauge keeps every label set it
ever saw. The page therefore holds one sample per past combination; the current one is the
sample with the newest timestamp (the largest value).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
LORA_INFO = "vllm:lora_requests_info"
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """What one scrape says; `max_lora` is None when vLLM runs without LoRA."""

    waiting: float = 0.0
    kv_cache_usage: float = 0.0
    max_lora: int | None = None
    running_adapters: frozenset[str] = frozenset()
    waiting_adapters: frozenset[str] = frozenset()


def parse_load(text: str) -> ReplicaLoad:
    """Sum the waiting requests and take the fullest KV cache over engines (data parallel)."""
    waiting = 0.0
    kv_cache_usage = 0.0
    newest_lora_info = float("-inf")
    lora_labels: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name, labels, value = _split_sample(line)
        if math.isnan(value):
            continue
        if name == WAITING:
            waiting += value
        elif name in KV_CACHE_USAGE:
            kv_cache_usage = max(kv_cache_usage, value)
        elif name == LORA_INFO and value > newest_lora_info:
            newest_lora_info = value
            lora_labels = dict(_LABEL.findall(labels))
    max_lora = lora_labels.get("max_lora")
    return ReplicaLoad(
        waiting=waiting,
        kv_cache_usage=kv_cache_usage,
        max_lora=int(max_lora) if max_lora else None,
        running_adapters=_names(lora_labels.get("running_lora_adapters", "")),
        waiting_adapters=_names(lora_labels.get("waiting_lora_adapters", "")),
    )


def _split_sample(line: str) -> tuple[str, str, float]:
    """`name{labels} value [timestamp]` -> (name, labels text, value); NaN if unreadable."""
    brace = line.find("{")
    if brace == -1:
        name, _, rest = line.partition(" ")
        labels = ""
    else:
        name = line[:brace]
        close = line.rfind("}")
        labels, rest = line[brace + 1 : close], line[close + 1 :]
    fields = rest.split()
    try:
        return name, labels, float(fields[0])
    except (IndexError, ValueError):
        return name, labels, float("nan")


def _names(joined: str) -> frozenset[str]:
    return frozenset(name for name in joined.split(",") if name)
