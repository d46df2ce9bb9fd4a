"""The benchmark's phases, run one after another, each over all three paths in turn.

Phases run sequentially and each measured run follows a short warm-up on the same path, so
connection pools and lazy imports are settled before anything is timed. Request bodies are
identical for every path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import httpx
import orjson

from bench import streams
from bench.loadgen import plain_load
from bench.measures import PlainResult, RssSample, StreamResult, tree_cpu_seconds
from bench.rss import tree_rss_kib
from bench.servers import MODEL, Target, set_token_delay

_PROMPT = [{"role": "user", "content": "Say something about gateways."}]
# vLLM's own extension, passed through by every path: each answer is exactly max_tokens long,
# so every path relays the same number of tokens whatever the prompt.
_FIXED_LENGTH = {"ignore_eos": True}


@dataclass(frozen=True)
class BenchSettings:
    """How long and how hard each phase runs (see bench/run.py for the defaults and --quick)."""

    latency_seconds: int
    throughput_seconds: int
    warmup_seconds: int
    throughput_concurrency: int
    plain_tokens: int
    streams: int
    stream_tokens: int
    stream_seconds: int
    paced_token_delay_ms: float
    rss_requests: int
    rss_samples: int

    def plain_body(self) -> bytes:
        return orjson.dumps(
            {"model": MODEL, "messages": _PROMPT, "max_tokens": self.plain_tokens, **_FIXED_LENGTH}
        )

    def stream_body(self) -> bytes:
        return orjson.dumps(
            {
                "model": MODEL,
                "messages": _PROMPT,
                "max_tokens": self.stream_tokens,
                "stream": True,
                **_FIXED_LENGTH,
            }
        )


@dataclass
class StreamPhase:
    """One streaming phase over every path, with the stand-in's pause between tokens in it.

    With no pause, chunks/s measures how fast each path relays, but on a saturated 2-core
    machine TTFT then mostly measures CPU contention; paced at about the rate vLLM on a GPU
    streams each response under load, TTFT shows what a path adds for a real client.
    """

    label: str
    token_delay_ms: float
    by_path: dict[str, StreamResult] = field(default_factory=dict)

    def added_ttft_median_ms(self, path: str) -> float:
        return self.by_path[path].ttft_median_ms - self.by_path["direct"].ttft_median_ms


@dataclass
class BenchResults:
    """Everything measured, keyed by path name; `gateway_rss_kib` by checkpoint;
    `throughput_cpu_s`: CPU seconds each path's own process tree spent on its c=16 run."""

    relay_streams: StreamPhase
    paced_streams: StreamPhase
    latency: dict[str, PlainResult] = field(default_factory=dict)
    throughput: dict[str, PlainResult] = field(default_factory=dict)
    throughput_cpu_s: dict[str, float] = field(default_factory=dict)
    gateway_rss_kib: dict[str, int] = field(default_factory=dict)
    long_run: list[RssSample] = field(default_factory=list)
    long_run_errors: int = 0

    @property
    def rss_growth_pct(self) -> float:
        first, last = self.long_run[0].rss_kib, self.long_run[-1].rss_kib
        return (last - first) / first * 100

    @property
    def stream_phases(self) -> tuple[StreamPhase, StreamPhase]:
        return self.relay_streams, self.paced_streams

    def cpu_s_per_1k_requests(self, path: str) -> float:
        requests = self.throughput[path].requests
        return self.throughput_cpu_s[path] / requests * 1000 if requests else math.nan


def check_answers(paths: dict[str, Target], settings: BenchSettings) -> None:
    """Fail fast, with the reply, when a path does not answer a plain request with a completion:
    a path that answers 401 quickly would otherwise look like a fast path."""
    for target in paths.values():
        reply = httpx.post(
            target.chat_url, content=settings.plain_body(), headers=target.headers(), timeout=30
        )
        if reply.status_code != 200 or not reply.json().get("choices"):
            raise RuntimeError(f"{target.name} answered {reply.status_code}: {reply.text[:500]}")


def run_all(paths: dict[str, Target], settings: BenchSettings) -> BenchResults:
    pace = settings.paced_token_delay_ms
    results = BenchResults(
        relay_streams=StreamPhase("relay capacity (no pause)", 0.0),
        paced_streams=StreamPhase(f"paced ({pace:g} ms/token)", pace),
    )
    gateway_pid = paths["gateway"].pid
    results.gateway_rss_kib["start"] = tree_rss_kib(gateway_pid)
    plain = settings.plain_body()

    for target in paths.values():
        _announce("latency at c=1", target)
        plain_load(target, plain, 1, settings.warmup_seconds)
        results.latency[target.name] = plain_load(target, plain, 1, settings.latency_seconds)
    results.gateway_rss_kib["after latency phase"] = tree_rss_kib(gateway_pid)

    concurrency = settings.throughput_concurrency
    for target in paths.values():
        _announce(f"requests/s at c={concurrency}", target)
        plain_load(target, plain, concurrency, settings.warmup_seconds)
        cpu_before = tree_cpu_seconds(target.pid)
        results.throughput[target.name] = plain_load(
            target, plain, concurrency, settings.throughput_seconds
        )
        results.throughput_cpu_s[target.name] = tree_cpu_seconds(target.pid) - cpu_before
    results.gateway_rss_kib["after throughput phase"] = tree_rss_kib(gateway_pid)

    for phase in results.stream_phases:
        _stream_phase(paths, settings, phase)
        results.gateway_rss_kib[f"after {phase.label} streams"] = tree_rss_kib(gateway_pid)

    _announce(f"RSS over {settings.rss_requests} requests", paths["gateway"])
    _long_run(paths["gateway"], settings, results)
    results.gateway_rss_kib["after long run"] = results.long_run[-1].rss_kib
    return results


def _stream_phase(paths: dict[str, Target], settings: BenchSettings, phase: StreamPhase) -> None:
    """Run `settings.streams` concurrent streams against each path with the stand-in pausing
    `phase.token_delay_ms` between tokens; later phases get the stand-in back unpaused."""
    body = settings.stream_body()
    set_token_delay(paths["direct"].base_url, phase.token_delay_ms)
    for target in paths.values():
        _announce(f"{settings.streams} concurrent streams, {phase.label}", target)
        streams.run(target, body, settings.streams, settings.warmup_seconds)
        phase.by_path[target.name] = streams.run(
            target, body, settings.streams, settings.stream_seconds
        )
    set_token_delay(paths["direct"].base_url, 0)


def _long_run(target: Target, settings: BenchSettings, results: BenchResults) -> None:
    """Send at least `rss_requests` plain requests, sampling RSS after each part.

    Load runs last whole seconds, not a request count, so each part lasts the seconds that
    its share of the requests should take at the rate the previous part reached (the first
    part: the throughput phase's rate); the total lands at or a little above the target.
    """
    share = max(1, settings.rss_requests // settings.rss_samples)
    body = settings.plain_body()
    rps = results.throughput[target.name].rps
    done = 0
    results.long_run.append(RssSample(0, tree_rss_kib(target.pid)))
    while done < settings.rss_requests:
        wanted = min(share, settings.rss_requests - done)
        seconds = max(1, math.ceil(wanted / rps)) if rps else 1
        part = plain_load(target, body, settings.throughput_concurrency, seconds)
        if part.requests == 0:
            raise RuntimeError(f"long run against {target.name} completed no requests")
        done += part.requests
        rps = part.rps
        results.long_run_errors += part.errors
        results.long_run.append(RssSample(done, tree_rss_kib(target.pid)))


def _announce(phase: str, target: Target) -> None:
    print(f"  {time.strftime('%H:%M:%S')}  {phase}: {target.name}", flush=True)
