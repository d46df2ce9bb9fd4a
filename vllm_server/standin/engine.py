"""The stand-in's "engine": loaded adapters, LoRA slots, fault dice and the counters that
/metrics reports. Counting is plain integer arithmetic; rendering happens on scrape."""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from vllm_server.standin.config import StandinConfig, system_fingerprint
from vllm_server.standin.errors import VLLMError, model_not_found, wrong_type
from vllm_server.standin.slots import LoraSlots

# vLLM's bucket bounds for vllm:time_to_first_token_seconds.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort", "error")


@dataclass
class Stats:
    running: int = 0
    kv_reserved_tokens: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    # per bucket, not cumulative; the last slot counts observations above the last bound
    ttft_bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(TTFT_BUCKETS) + 1))
    ttft_sum: float = 0.0

    def observe_ttft(self, seconds: float) -> None:
        self.ttft_bucket_counts[bisect.bisect_left(TTFT_BUCKETS, seconds)] += 1
        self.ttft_sum += seconds


class Generation:
    """One admitted request as the counters see it: tokens out, then how it finished."""

    def __init__(self, stats: Stats, arrival: float, prompt_tokens: int):
        self._stats = stats
        self._arrival = arrival
        self._prompt_tokens = prompt_tokens
        self._started = False
        self.finish_reason = "stop"

    def emitted(self, tokens: int) -> None:
        if not self._started:
            self._started = True
            self._stats.observe_ttft(time.monotonic() - self._arrival)
            self._stats.prompt_tokens += self._prompt_tokens
        self._stats.generation_tokens += tokens


class Engine:
    def __init__(self, config: StandinConfig):
        self.config = config
        self.fingerprint = system_fingerprint(config)
        self.faults = replace(config.faults)
        self.adapters: dict[str, str] = dict(config.lora_modules)
        self.slots = LoraSlots(config.max_loras)
        self.stats = Stats()
        self._fault_dice = random.Random(config.seed)

    def resolve_model(self, requested: object) -> tuple[str, str | None]:
        """(the name to echo in responses, the adapter or None for the base model)."""
        base = self.config.served_model_name
        if requested is None or requested == "":
            return base, None
        if not isinstance(requested, str):
            raise wrong_type("model", "string", requested)
        if requested == base:
            return base, None
        if requested in self.adapters:
            return requested, requested
        raise model_not_found(requested, base)

    def maybe_fail(self) -> None:
        """Raise the injected 500 for a `fail_rate` share of requests, counted as "error"."""
        fail_rate = self.faults.fail_rate
        if fail_rate > 0 and self._fault_dice.random() < fail_rate:
            self.stats.finished["error"] += 1
            raise VLLMError(
                500, "InternalServerError", f"Injected failure (stand-in fail_rate={fail_rate})."
            )

    def record_abort(self) -> None:
        self.stats.finished["abort"] += 1

    @property
    def kv_cache_usage(self) -> float:
        return min(1.0, self.stats.kv_reserved_tokens / self.config.kv_cache_tokens)

    @asynccontextmanager
    async def generating(
        self, adapter: str | None, arrival: float, prompt_tokens: int, max_tokens: int
    ) -> AsyncIterator[Generation]:
        """Hold a running slot (waiting for a LoRA slot first if need be) while generating;
        KV cache is reserved for the prompt plus max_tokens, as a scheduler would."""
        if adapter is not None:
            await self.slots.acquire(adapter)
        reserved = prompt_tokens + max_tokens
        self.stats.running += 1
        self.stats.kv_reserved_tokens += reserved
        generation = Generation(self.stats, arrival, prompt_tokens)
        try:
            yield generation
            self.stats.finished[generation.finish_reason] += 1
        finally:
            self.stats.running -= 1
            self.stats.kv_reserved_tokens -= reserved
            if adapter is not None:
                self.slots.release(adapter)
