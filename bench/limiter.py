"""What the rate limiter costs a request, and how far its token estimate is off.

    .venv/bin/python -m bench.limiter latency    # the limiter alone: reserve + settle
    .venv/bin/python -m bench.limiter pipeline   # through a real gateway: limits on vs off
    .venv/bin/python -m bench.limiter estimate   # estimate vs stand-in and tiny-model counts

`latency` times `await reserve()` plus the `settle()` call for a key whose tenant and key both
carry all five limits (the most work one request can ask of the script), against Redis on
loopback (the local one on 6379 if it answers, else a child redis-server), at concurrency 1
and 16 (16 callers in a closed loop, no other work: that row shows the throughput one
process and one Redis reach, and its latency is queueing), next to the in-process limiter;
"CPU/request" is the process's CPU time per request, background settlement included.
`pipeline` runs a stand-in and one gateway on that Redis and sends requests in turn from a key
without limits, one whose tenant limits requests and tokens per minute, and one whose tenant
and key both carry all five limits, at concurrency 1: the difference of the medians of the
gateway's own x-gateway-overhead-ms (the reservation's round trip, which also carries the
previous request's settlement) is what the limiter adds inside the real hot path.
`estimate` compares the prompt estimate with the stand-in's count (a word per token) and with
the tiny model's BPE tokenizer (.cache/tiny-model, chat template applied) on English prose
(Python's pydoc topics) and on Python source, with the same chat bodies for all three.
Results are printed as Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

from bench.gateway_process import Gateway, start_gateway
from bench.measures import percentile
from bench.processes import start_standin
from bench.redis_server import (
    LOCAL_REDIS_URL,
    answers_ping,
    delete_prefixed_keys,
    start_redis_server,
)
from gateway.limits import Limiter, open_limiter
from gateway.settings import LimitsSettings, StoreSettings
from gateway.surfaces import ChatCompletions
from gateway.tenancy.auth import Principal
from gateway.tenancy.models import ApiKey, Limits, Tenant
from vllm_server.standin import text as standin_text

# Generous enough that nothing is refused during a run: the point is the work, not refusals.
ALL_LIMITS = Limits(10**9, 10**12, 10**6, 10**12, 10**12)
ALL_FIVE_LIMITS = {name: 10**9 for name in Limits.__slots__}
TYPICAL_LIMITS = {"requests_per_minute": 10**9, "tokens_per_minute": 10**9}
TINY_MODEL_BASE = Path(__file__).resolve().parents[1] / ".cache" / "tiny-model" / "base"


@contextmanager
def loopback_redis() -> Iterator[str]:
    if answers_ping(LOCAL_REDIS_URL):
        yield LOCAL_REDIS_URL
        return
    with tempfile.TemporaryDirectory() as workdir:
        server = start_redis_server(Path(workdir))
        try:
            yield server.url
        finally:
            server.stop()


# ---- latency: the limiter alone ----------------------------------------------------------


def limited_principal() -> Principal:
    tenant = Tenant("ten_bench", "bench", limits=ALL_LIMITS)
    key = ApiKey("key_bench", "ten_bench", "bench", "sk-bench", "hash", limits=ALL_LIMITS)
    return Principal.of(key, tenant)


async def time_requests(limiter: Limiter, requests: int, concurrency: int) -> dict[str, float]:
    who = limited_principal()
    samples: list[float] = []
    per_worker = requests // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            reservation = await limiter.reserve(who, 100)
            limiter.settle(reservation, 60)
            samples.append(time.perf_counter() - started)

    for _ in range(200):  # warm-up: connections, scripts, caches
        limiter.settle(await limiter.reserve(who, 100), 60)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall_before
    await asyncio.sleep(0.2)  # let the last settlement batches go out, on the CPU clock too
    cpu = time.process_time() - cpu_before
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p99_us": percentile(samples, 99) * 1e6,
        "cpu_us": cpu / len(samples) * 1e6,
        "per_s": len(samples) / wall,
    }


async def latency(requests: int) -> None:
    rows = []
    with loopback_redis() as url:
        prefix = f"bench-limiter-{uuid.uuid4().hex}:"
        for name, store in (
            ("in-process", StoreSettings()),
            ("Redis (loopback)", StoreSettings(redis_url=url, redis_prefix=prefix)),
        ):
            for concurrency in (1, 16):
                limiter = open_limiter(LimitsSettings(), store)
                await limiter.start()
                result = await time_requests(limiter, requests, concurrency)
                await limiter.close()
                rows.append((name, concurrency, result))
        await delete_prefixed_keys(url, prefix)
    print(f"reserve + settle, tenant and key with all five limits, {requests} requests each\n")
    print("| limiter | concurrency | median | p99 | CPU/request | requests/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, concurrency, result in rows:
        print(
            f"| {name} | {concurrency} | {result['median_us']:.0f} µs | "
            f"{result['p99_us']:.0f} µs | {result['cpu_us']:.0f} µs | {result['per_s']:,.0f} |"
        )


# ---- pipeline: through a real gateway ---------------------------------------------------


def pipeline(requests: int) -> None:
    with loopback_redis() as url, tempfile.TemporaryDirectory() as workdir:
        prefix = f"bench-limiter-{uuid.uuid4().hex}:"
        log_dir = Path(workdir)
        standin = start_standin(log_dir)
        gateway = None
        try:
            gateway = start_gateway(
                standin.url,
                log_dir,
                tenant="bench-unlimited",
                store__redis_url=url,
                store__redis_prefix=prefix,
                auth__key_hash_secret="bench-limiter-shared-secret",
            )
            keys = {
                "off": gateway.api_key,
                "tenant: requests + tokens per minute": limited_key(
                    gateway, "bench-typical", TYPICAL_LIMITS, {}
                ),
                "tenant and key: all five": limited_key(
                    gateway, "bench-all", ALL_FIVE_LIMITS, ALL_FIVE_LIMITS
                ),
            }
            overheads = overhead_samples(gateway.url, keys, requests)
        finally:
            if gateway is not None:
                gateway.stop()
            standin.stop()
            asyncio.run(delete_prefixed_keys(url, prefix))
    print(f"gateway overhead (x-gateway-overhead-ms), concurrency 1, {requests} requests each\n")
    print("| limits | median | p99 | added (median) |")
    print("|---|---:|---:|---:|")
    off = statistics.median(overheads["off"])
    for name, samples in overheads.items():
        median = statistics.median(samples)
        print(
            f"| {name} | {median:.3f} ms | {percentile(samples, 99):.3f} ms | "
            f"{median - off:+.3f} ms |"
        )


def limited_key(
    gateway: Gateway, tenant_name: str, tenant_limits: dict[str, int], key_limits: dict[str, int]
) -> str:
    tenant = gateway.admin(
        "POST",
        "/tenants",
        json={
            "name": tenant_name,
            "models": {"base": {"base_model": "base"}},
            "limits": tenant_limits,
        },
    )
    tenant.raise_for_status()
    key = gateway.admin(
        "POST",
        "/keys",
        json={"tenant_id": tenant.json()["id"], "name": tenant_name, "limits": key_limits},
    )
    key.raise_for_status()
    return key.json()["secret"]


def overhead_samples(url: str, keys: dict[str, str], requests: int) -> dict[str, list[float]]:
    """Requests from each key in turn (so drift hits all alike), after a warm-up round."""
    body = orjson.dumps(
        {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    )
    samples: dict[str, list[float]] = {name: [] for name in keys}
    with httpx.Client(base_url=url, timeout=30) as client:
        for round_number in range(requests + 200):
            for name, key in keys.items():
                response = client.post(
                    "/v1/chat/completions",
                    content=body,
                    headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
                )
                response.raise_for_status()
                if round_number >= 200:
                    samples[name].append(float(response.headers["x-gateway-overhead-ms"]))
    return samples


# ---- estimate: how far off the prompt estimate is ----------------------------------------


def prose_texts() -> list[str]:
    import pydoc_data.topics

    paragraphs = []
    for topic in pydoc_data.topics.topics.values():
        paragraphs += [p.strip() for p in topic.split("\n\n") if len(p.strip()) > 40]
    return paragraphs


def code_texts() -> list[str]:
    import asyncio as stdlib_sample

    source = Path(stdlib_sample.__file__).parent
    chunks = []
    for path in sorted(source.glob("*.py")):
        chunks += [c.strip() for c in path.read_text().split("\n\n\n") if len(c.strip()) > 40]
    return chunks


def chat_bodies(texts: list[str], count: int, seed: int) -> list[list[dict[str, str]]]:
    """Conversations of 1-3 messages, each 1-6 pieces of text long."""
    rng = random.Random(seed)
    roles = ("user", "assistant", "user")
    return [
        [
            {"role": roles[i], "content": "\n\n".join(rng.sample(texts, rng.randint(1, 6)))}
            for i in range(rng.randint(1, 3))
        ]
        for _ in range(count)
    ]


def tiny_model_counter():
    import jinja2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TINY_MODEL_BASE / "tokenizer.json"))
    template = jinja2.Template((TINY_MODEL_BASE / "chat_template.jinja").read_text())

    def count(messages: list[dict[str, str]]) -> int:
        prompt = template.render(messages=messages, bos_token="<s>", add_generation_prompt=True)
        return len(tokenizer.encode(prompt, add_special_tokens=False).ids)

    return count


def error_row(name: str, estimates: list[int], actual: list[int]) -> str:
    errors = [(e - a) / a * 100 for e, a in zip(estimates, actual, strict=True)]
    magnitudes = sorted(abs(error) for error in errors)
    under = sum(error < 0 for error in errors) / len(errors) * 100
    return (
        f"| {name} | {statistics.mean(actual):.0f} | {statistics.median(errors):+.1f}% | "
        f"{statistics.median(magnitudes):.1f}% | {percentile(magnitudes, 90):.1f}% | {under:.0f}% |"
    )


def estimate(count: int) -> None:
    counters = {"stand-in (a word per token)": standin_text.chat_prompt_tokens}
    if (TINY_MODEL_BASE / "tokenizer.json").exists():
        counters["tiny model BPE tokenizer"] = tiny_model_counter()
    else:
        print(
            f"({TINY_MODEL_BASE} is missing: the real-vLLM test suite builds it)\n", file=sys.stderr
        )
    print(f"prompt estimate vs counted prompt tokens, {count} chat bodies per corpus\n")
    print("| corpus vs counter | mean tokens | median error | median abs | p90 abs | under |")
    print("|---|---:|---:|---:|---:|---:|")
    for corpus, texts in (("prose", prose_texts()), ("Python code", code_texts())):
        conversations = chat_bodies(texts, count, seed=1)
        chat = ChatCompletions()
        estimates = [
            chat.estimate_prompt_tokens(
                chat.parse(orjson.dumps({"model": "m", "messages": messages}))
            )
            for messages in conversations
        ]
        for counter_name, counter in counters.items():
            actual = [counter(messages) for messages in conversations]
            print(error_row(f"{corpus} vs {counter_name}", estimates, actual))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.limiter", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("latency", "pipeline", "estimate"))
    parser.add_argument("--requests", type=int, default=4000, help="per row (latency, pipeline)")
    parser.add_argument("--bodies", type=int, default=500, help="per corpus (estimate)")
    args = parser.parse_args(argv)
    if args.what == "latency":
        asyncio.run(latency(args.requests))
    elif args.what == "pipeline":
        pipeline(args.requests)
    else:
        estimate(args.bodies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
