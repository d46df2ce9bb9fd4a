"""Start the three benchmarked paths as child processes on free loopback ports.

All three run at once for the whole benchmark, so every phase sees the same machine load;
each is stopped by its PID when the `running_paths` block ends, errors and Ctrl-C included.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx

from bench import gateway_tenant, litellm_peer
from bench.processes import free_port, running_server

MODEL = "base"


@dataclass(frozen=True)
class Target:
    """One path to the upstream: where requests go, the Authorization they carry, whose RSS."""

    name: str
    base_url: str
    authorization: str | None
    pid: int

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        return headers


@dataclass(frozen=True)
class GatewayOptions:
    """What the gateway gets beyond host, port, upstream and its benchmark tenant (see
    bench/gateway_tenant.py): new gateway settings change the harness here only."""

    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def running_paths(
    workdir: Path, max_tokens: int, gateway: GatewayOptions
) -> Iterator[dict[str, Target]]:
    """Yield the paths `direct`, `gateway` and `litellm`, all in front of one stand-in that
    answers `max_tokens` tokens when a request names none."""
    with ExitStack() as stack:
        port = free_port()
        upstream = stack.enter_context(
            running_server(
                [
                    sys.executable,
                    "-m",
                    "vllm_server.cli",
                    "standin",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--max-tokens",
                    str(max_tokens),
                ],
                port,
                workdir / "standin.log",
            )
        )
        port = free_port()
        ours = stack.enter_context(
            running_server(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--upstream",
                    upstream.url,
                    *gateway.extra_args,
                ],
                port,
                workdir / "gateway.log",
                ready_path="/healthz",
                env={**gateway_tenant.environment(workdir), **gateway.env},
            )
        )
        gateway_key = gateway_tenant.create_key(ours.url, MODEL)
        yield {
            "direct": Target("direct", upstream.url, None, upstream.process.pid),
            "gateway": Target("gateway", ours.url, f"Bearer {gateway_key}", ours.process.pid),
            "litellm": start_litellm(workdir, upstream.url, stack),
        }


def start_litellm(workdir: Path, upstream_url: str, stack: ExitStack) -> Target:
    """LiteLLM's proxy in front of `upstream_url`, stopped when `stack` closes."""
    port = free_port()
    config = litellm_peer.write_config(workdir, upstream_url, MODEL)
    peer = stack.enter_context(
        running_server(
            litellm_peer.argv(config, port),
            port,
            workdir / "litellm.log",
            ready_path=litellm_peer.READY_PATH,
            env=litellm_peer.ENV,
            timeout=180.0,
        )
    )
    return Target("litellm", peer.url, f"Bearer {litellm_peer.MASTER_KEY}", peer.process.pid)


def stop_on_sigterm() -> None:
    """Make SIGTERM end the benchmark like Ctrl-C does: as an exception, so every `with`
    block still stops the servers it started."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def set_token_delay(standin_url: str, milliseconds: float) -> None:
    """Pause the stand-in between generated tokens from now on (its runtime faults API), so
    one phase can pace streams without slowing the phases before it."""
    reply = httpx.post(f"{standin_url}/standin/faults", json={"itl_ms": milliseconds}, timeout=10)
    reply.raise_for_status()
