"""What the safety stage costs: input checks per KB of prompt, the stream guard per chunk, and
the chunk throughput of a gateway with output rules against one without.

Run `python -m bench.safety_cost [--rounds N] [--seconds S]`: prints and writes
bench/results/safety_cost.md.

1. Input: the input stage with the built-in regex detectors on chat prompts of 1, 4 and 16 KB
   (nothing to rewrite: the common case), in thread CPU time, for two kinds of text: prose
   and code (the docstrings of a few standard-library modules: about 20 digits per KB) and
   the benign corpus's look-alikes (numbers in nearly every sentence: about 150 per KB).
2. Stream guard: `on_events` over a stream recorded from the stand-in (256 tokens of a
   vLLM-shaped chat stream), one event per call (a paced stream) and eight per call (an
   upstream that outruns the relay), in thread CPU time per chunk.
3. End to end: gateways in front of one stand-in, one without a policy and one per output
   policy in E2E_POLICIES (as its default); 32 concurrent streams of 64 tokens, unpaced
   (relay capacity) and paced (5 ms per token), alternating rounds; median chunks/s and the
   gateway's CPU time per chunk. The guarded gateways must answer an input probe with 400,
   or the safety stage is not wired in and this part is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import datetime
import functools
import itertools
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import gateway_tenant, streams
from bench.measures import tree_cpu_seconds
from bench.processes import ServerProcess, free_port, running_server
from bench.safety_corpus.build import DENY_TERMS, load
from bench.safety_eval import version_line
from bench.servers import Target, set_token_delay
from gateway.core.request import InferenceRequest
from gateway.safety.events import SafetyEvents
from gateway.safety.policy import PII_DETECTORS, PolicySpec
from gateway.safety.runtime import CompiledPolicy, PolicyRuntime
from gateway.surfaces import ChatCompletions

RESULTS = Path(__file__).parent / "results" / "safety_cost.md"
PROMPT_KBS = (1, 4, 16)
PROSE_MODULES = (argparse, asyncio, collections, csv, functools, itertools, json, logging)
STREAM_TOKENS = 256
E2E_STREAMS = 32
E2E_TOKENS = 64
PACED_MS = 5.0
PROBE = "zz-safety-probe-zz"


def _rules(direction: str, action: str, detectors: list[str]) -> list[dict[str, Any]]:
    return [{"name": d, "detector": d, "direction": direction, "action": action} for d in detectors]


PII = sorted(d.value for d in PII_DETECTORS)
INPUT_POLICIES = {
    "PII and secrets (7 detectors)": _rules("input", "flag", PII),
    "+ prompt injection + 10-term deny list": [
        *_rules("input", "flag", PII),
        *_rules("input", "flag", ["prompt_injection"]),
        {"name": "terms", "detector": "deny_terms", "direction": "input", "terms": DENY_TERMS},
    ],
}
OUTPUT_POLICIES = {
    "cards only (redact)": _rules("output", "redact", ["payment_card"]),
    "PII and secrets (redact)": _rules("output", "redact", PII),
    "PII + 10-term deny list (block)": [
        *_rules("output", "redact", PII),
        {"name": "terms", "detector": "deny_terms", "direction": "output", "terms": DENY_TERMS},
    ],
}
E2E_POLICIES = ("cards only (redact)", "PII + 10-term deny list (block)")
NO_POLICY = "no policy"


def compiled(rules: list[dict[str, Any]]) -> CompiledPolicy:
    return CompiledPolicy("bench", PolicySpec.model_validate({"rules": rules}), None)


def runtime(policy: CompiledPolicy) -> PolicyRuntime:
    """What each request gets: the compiled policy is shared, the runtime is new."""
    return PolicyRuntime(policy, "tenant", "key", SafetyEvents(1_000_000))


def cpu_per_call(call: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Thread CPU seconds per call, the best of `repeats` (the least disturbed by others)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(calls):
            call()
        best = min(best, time.thread_time() - started)
    return best / calls


CHAT = ChatCompletions()


def chat_prompt(kb: int, texts: list[str]) -> InferenceRequest:
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    size, index = 0, 0
    while size < kb * 1024:
        text = texts[index % len(texts)]
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
        size += len(text)
        index += 1
    return CHAT.parse(orjson.dumps({"model": "m", "messages": messages}))


def input_cost(policy: CompiledPolicy, request: InferenceRequest, kb: int) -> float:
    """Microseconds of input checks per KB of `request`'s prompt."""
    checks = max(20, 400 // kb)

    async def check_all() -> None:
        for _ in range(checks):
            await runtime(policy).check_input(CHAT.texts(request))

    loop = asyncio.new_event_loop()
    try:
        seconds = cpu_per_call(lambda: loop.run_until_complete(check_all()), 1) / checks
    finally:
        loop.close()
    return seconds / kb * 1e6


def prose_and_code() -> list[str]:
    """Paragraphs of standard-library docstrings: what a coding assistant is sent."""
    paragraphs = []
    for module in PROSE_MODULES:
        for name in sorted(dir(module)):
            doc = getattr(getattr(module, name), "__doc__", None)
            if isinstance(doc, str) and len(doc) > 200:
                paragraphs += [p for p in doc.split("\n\n") if p.strip()]
    return paragraphs


def input_costs() -> dict[str, dict[int, float]]:
    """Microseconds per KB of prompt, per (text kind, policy) and prompt size."""
    kinds = {
        "prose and code": prose_and_code(),
        "look-alikes": [sample["text"] for sample in load()["benign"]],
    }
    costs = {}
    for kind, texts in kinds.items():
        prompts = {kb: chat_prompt(kb, texts) for kb in PROMPT_KBS}
        for label, rules in INPUT_POLICIES.items():
            policy = compiled(rules)
            costs[f"{kind}: {label}"] = {
                kb: input_cost(policy, prompts[kb], kb) for kb in PROMPT_KBS
            }
    return costs


def record_stream(standin: ServerProcess) -> list[bytes]:
    body = {
        "model": "base",
        "messages": [{"role": "user", "content": "tell me a story"}],
        "stream": True,
        "max_tokens": STREAM_TOKENS,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    reply = httpx.post(standin.url + "/v1/chat/completions", json=body, timeout=60)
    reply.raise_for_status()
    return [event + b"\n\n" for event in reply.content.split(b"\n\n")[:-1]]


def guard_cost(policy: CompiledPolicy, events: list[bytes], per_call: int) -> float:
    """Microseconds of `on_events` per chunk, `per_call` events at a time."""
    reads = [b"".join(events[i : i + per_call]) for i in range(0, len(events), per_call)]

    def replay() -> None:
        guard = runtime(policy).output_guard()
        for read in reads:
            guard.on_events(read)

    return cpu_per_call(replay, 20) / len(events) * 1e6


def guard_costs(events: list[bytes]) -> dict[str, dict[int, float]]:
    """Microseconds per chunk, per policy and events per call."""
    return {
        label: {per_call: guard_cost(compiled(rules), events, per_call) for per_call in (1, 8)}
        for label, rules in OUTPUT_POLICIES.items()
    }


@contextmanager
def gateways(workdir: Path, upstream: str) -> Iterator[dict[str, Target]]:
    """A gateway without a policy, and one per end-to-end output policy, as its default (plus
    an input probe rule that tells whether the safety stage is wired in)."""
    variants: dict[str, dict[str, str]] = {NO_POLICY: {}}
    for label in E2E_POLICIES:
        probe = {"name": "probe", "detector": "deny_terms", "direction": "input", "terms": [PROBE]}
        rules = [*OUTPUT_POLICIES[label], probe]
        variants[label] = {
            "VLLM_GATEWAY_SAFETY__POLICIES": json.dumps({"bench": {"rules": rules}}),
            "VLLM_GATEWAY_SAFETY__DEFAULT_POLICY": "bench",
        }
    with ExitStack() as stack:
        targets = {}
        for index, (name, env) in enumerate(variants.items()):
            directory = workdir / f"gateway-{index}"
            directory.mkdir()
            port = free_port()
            argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
            server = stack.enter_context(
                running_server(
                    [*argv, "--upstream", upstream],
                    port,
                    directory / "gateway.log",
                    ready_path="/healthz",
                    env={**gateway_tenant.environment(directory), **env},
                )
            )
            key = gateway_tenant.create_key(server.url, "base")
            targets[name] = Target(name, server.url, f"Bearer {key}", server.process.pid)
        yield targets


def safety_wired(target: Target) -> bool:
    body = {"model": "base", "messages": [{"role": "user", "content": PROBE}]}
    reply = httpx.post(target.chat_url, json=body, headers=target.headers(), timeout=30)
    return reply.status_code == 400


# pacing -> gateway variant -> (median chunks/s, median gateway CPU us per chunk)
EndToEnd = dict[str, dict[str, tuple[float, float]]]


def end_to_end(
    standin: ServerProcess, workdir: Path, rounds: int, seconds: float
) -> EndToEnd | None:
    body = orjson.dumps(
        {
            "model": "base",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": E2E_TOKENS,
            "ignore_eos": True,
        }
    )
    results: EndToEnd = {}
    with gateways(workdir, standin.url) as targets:
        if not all(safety_wired(targets[label]) for label in E2E_POLICIES):
            return None
        for pacing, delay_ms in (("unpaced", 0.0), (f"paced {PACED_MS:g} ms/token", PACED_MS)):
            set_token_delay(standin.url, delay_ms)
            rates: dict[str, list[float]] = {name: [] for name in targets}
            cpu: dict[str, list[float]] = {name: [] for name in targets}
            for target in targets.values():
                streams.run(target, body, E2E_STREAMS, 1.0)
            for _ in range(rounds):
                for name, target in targets.items():
                    before = tree_cpu_seconds(target.pid)
                    result = streams.run(target, body, E2E_STREAMS, seconds)
                    rates[name].append(result.chunks_per_s)
                    cpu[name].append((tree_cpu_seconds(target.pid) - before) / result.chunks * 1e6)
            results[pacing] = {
                name: (statistics.median(rates[name]), statistics.median(cpu[name]))
                for name in targets
            }
        set_token_delay(standin.url, 0)
    return results


def markdown(
    inputs: dict[str, dict[int, float]],
    guard: dict[str, dict[int, float]],
    e2e: EndToEnd | None,
    command: str,
) -> str:
    lines = [
        "# What the safety stage costs",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Command: `{command}`",
        f"- Version: {version_line()}; Python {sys.version.split()[0]}",
        "- CPU times: thread CPU time, best of 5 runs (load on the machine inflates them).",
        "",
        "## Input checks (target: <= 50 us per KB of prompt)",
        "",
        "| text: policy | " + " | ".join(f"{kb} KB prompt" for kb in PROMPT_KBS) + " |",
        "|---|" + "---|" * len(PROMPT_KBS),
    ]
    for label, by_kb in inputs.items():
        lines.append(
            f"| {label} | " + " | ".join(f"{by_kb[kb]:.1f} us/KB" for kb in PROMPT_KBS) + " |"
        )
    lines += [
        "",
        f"## Stream guard, `on_events` over a recorded stream ({STREAM_TOKENS} tokens)",
        "",
        "| output policy | 1 event per call | 8 events per call |",
        "|---|---|---|",
    ]
    for label, by_call in guard.items():
        lines.append(f"| {label} | {by_call[1]:.2f} us/chunk | {by_call[8]:.2f} us/chunk |")
    lines += [
        "",
        f"## End to end, {E2E_STREAMS} concurrent streams of {E2E_TOKENS} tokens "
        "(target: >= 80% of the chunks/s)",
        "",
        "Ratios are against the gateway without a policy; the CPU ratio is the throughput ratio",
        "the gateway would see if it were the only bottleneck (here it shares 2 cores with the",
        "stand-in and the load client).",
        "",
    ]
    if e2e is None:
        lines.append(
            "Skipped: the gateway does not apply safety policies (the stage is not wired in)."
        )
    else:
        lines += [
            "| streams | output policy | chunks/s | ratio | gateway CPU us/chunk | CPU ratio |",
            "|---|---|---|---|---|---|",
        ]
        for pacing, by_variant in e2e.items():
            base_rate, base_cpu = by_variant[NO_POLICY]
            for name, (rate, cpu) in by_variant.items():
                lines.append(
                    f"| {pacing} | {name} | {rate:,.0f} | {rate / base_rate:.2f} | "
                    f"{cpu:.1f} | {base_cpu / cpu:.2f} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.safety_cost")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds per gateway")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    args = parser.parse_args()
    command = "python -m bench.safety_cost " + " ".join(sys.argv[1:])
    inputs = input_costs()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        port = free_port()
        argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--port", str(port)]
        with running_server(argv, port, workdir / "standin.log") as standin:
            guard = guard_costs(record_stream(standin))
            e2e = end_to_end(standin, workdir, args.rounds, args.seconds)
    report = markdown(inputs, guard, e2e, command.strip())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
