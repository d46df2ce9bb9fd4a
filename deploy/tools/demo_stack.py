"""Real traffic through a real stack, scraped by a real Prometheus, rendered as the dashboard.

Starts vLLM (the real CPU server with the tiny model, or the stand-in), a gateway with two
workers in front of it, and Prometheus scraping both every 2 s with the project's alert rules;
then sends a bounded, varying mix of requests over loopback for --minutes: three tenants,
base model and adapters, streamed and whole, plus a few requests the gateway must refuse
(unknown model, bad key) and prompts vLLM refuses (too long). Finally it renders the
dashboard from that Prometheus (render_dashboard.py) and stops everything it started.

    python -m deploy.tools.demo_stack --vllm real --minutes 6 \
        --out deploy/screenshots/dashboard.png
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.tools.render_dashboard import render
from tests.fixtures.gateway import start_gateway
from tests.fixtures.processes import free_port
from tests.fixtures.prometheus import start_prometheus
from tests.fixtures.standin import start_standin
from vllm_server.launcher import VllmServer, default_venv, demo_config

SCRAPE_INTERVAL_S = 2.0
PROMPTS = [
    "Summarise the refund policy for a customer in two sentences.",
    "Write a haiku about connection pools.",
    "def fibonacci(n):",
    "Explain what a LoRA adapter is to a new engineer.",
    "List three ways to reduce time to first token.",
]


@dataclass
class Caller:
    """One tenant's key and the public model names it may use."""

    tenant: str
    key: str
    models: list[str]
    weight: float


@contextmanager
def upstream(kind: str, work_dir: Path) -> Iterator[str]:
    """The model server's base URL while it runs."""
    if kind == "real":
        config = demo_config(default_venv(), free_port())
        server = VllmServer.start(config, work_dir / "vllm.log")
        try:
            yield server.url
        finally:
            server.stop()
    else:
        lora = [f"--lora={name}=/adapters/{name}" for name in ("tenant-a", "tenant-b", "tenant-c")]
        standin = start_standin(work_dir, *lora, "--ttft-ms=60", "--itl-ms=12")
        try:
            yield standin.url
        finally:
            standin.stop()


async def one_request(client: httpx.AsyncClient, url: str, callers: list[Caller]) -> None:
    caller = random.choices(callers, weights=[c.weight for c in callers])[0]
    key, model = caller.key, random.choice(caller.models)
    prompt = random.choice(PROMPTS)
    roll = random.random()
    if roll < 0.03:
        model = "gpt-4o"  # not one of the tenant's models: 404 from the gateway
    elif roll < 0.05:
        key = "sk-revoked-or-made-up"  # 401
    elif roll < 0.06:
        prompt = "tell me everything " * 400  # longer than vLLM's max_model_len: 400
    stream = random.random() < 0.6
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": random.randint(16, 96),
        "temperature": 0.7,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {key}"}
    async with client.stream(
        "POST", url + "/v1/chat/completions", json=body, headers=headers
    ) as response:
        async for _ in response.aiter_bytes():
            pass


async def drive(url: str, callers: list[Caller], minutes: float) -> int:
    """Closed-loop load for `minutes`; the number of concurrent callers follows a slow wave
    (2 to 10) so the panels show change. Returns the number of requests sent."""
    sent = 0
    deadline = time.monotonic() + minutes * 60
    started = time.monotonic()

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        nonlocal sent
        while (now := time.monotonic()) < deadline:
            phase = (now - started) / (minutes * 60)
            active = 2 + round(8 * (0.5 - 0.5 * math.cos(phase * 2 * math.pi * 1.5)))
            if index >= active:
                await asyncio.sleep(0.5)
                continue
            await one_request(client, url, callers)
            sent += 1

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(i, client) for i in range(10)))
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vllm", choices=("real", "standin"), default="real")
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    random.seed(7)
    with ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="demo-stack-")))
        upstream_url = stack.enter_context(upstream(args.vllm, work_dir))
        gateway = start_gateway(upstream_url, work_dir, server__workers="2")
        stack.callback(gateway.stop)
        _, globex_key = gateway.new_tenant(
            "globex",
            {
                "base": {"base_model": "base"},
                "legal": {"base_model": "base", "adapter": "tenant-c"},
            },
        )
        _, initech_key = gateway.new_tenant(
            "initech", {"support": {"base_model": "base", "adapter": "tenant-b"}}
        )
        callers = [
            Caller("acme", gateway.api_key, ["base", "tenant-a", "tenant-b"], 0.5),
            Caller("globex", globex_key, ["base", "legal"], 0.3),
            Caller("initech", initech_key, ["support"], 0.2),
        ]
        targets = {
            "vllm-gateway": [gateway.url.removeprefix("http://")],
            "vllm": [upstream_url.removeprefix("http://")],
        }
        prometheus = start_prometheus(targets, work_dir, SCRAPE_INTERVAL_S)
        stack.callback(prometheus.stop)
        print(f"gateway {gateway.url}, vLLM {upstream_url}, Prometheus {prometheus.url}")
        sent = asyncio.run(drive(gateway.url, callers, args.minutes))
        print(f"sent {sent} requests in {args.minutes} min")
        time.sleep(3 * SCRAPE_INTERVAL_S)  # the last requests reach Prometheus
        render(prometheus.url, args.out, args.minutes + 0.5, rate_interval="20s")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
