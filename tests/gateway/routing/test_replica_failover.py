"""One of two stand-in replicas killed (SIGKILL) while streams run on it, behind a real gateway
process, for each routing policy: its streams end with an error event and the others run to
their end, it is ejected, every request goes to the survivor (an adapter first used meanwhile
is loaded there), and started again on its port it is re-admitted with its adapters re-applied
and serves again. The steps are tests/fixtures/failover.py's, shared with the real vLLM
version (tests/integration/test_replica_failover_real_vllm.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.failover import Failover, kill_tree
from tests.fixtures.gateway import start_gateway, tenant_with_adapter
from tests.fixtures.processes import ServerProcess, free_port
from tests.fixtures.replicas import standin_at

# Slow enough tokens that every stream is still running when the replica is killed.
STANDIN_ARGS = ("--max-loras", "4", "--itl-ms", "10")
STREAM_BODY = {"prompt": "hi", "max_tokens": 300, "ignore_eos": True}
FAST = {
    "routing__health_interval_s": "0.2",
    "routing__scrape_interval_s": "0.2",
    "routing__registry_refresh_s": "0.2",
}


def answer_body(index: int) -> dict[str, Any]:
    return {"prompt": f"question {index}", "max_tokens": 4}


def answered_by_the_adapter(adapter: str, index: int, body: dict[str, Any]) -> None:
    """The stand-in names the model it generated with; the gateway renames the adapter's name
    to the public one, so any other model would show through."""
    assert body["model"] == "assistant", body
    assert body["choices"][0]["text"], body


@pytest.mark.parametrize("policy", ["round_robin", "affinity", "prefix"])
async def test_a_replica_killed_mid_stream_is_ejected_then_readmitted_with_its_adapters(
    policy: str, tmp_path: Path
) -> None:
    servers: dict[str, ServerProcess] = {}
    for port in (free_port(), free_port()):
        server = standin_at(port, tmp_path, *STANDIN_ARGS)
        servers[server.url] = server
    started = list(servers.values())
    first, second = servers
    gateway = start_gateway(
        first,
        tmp_path,
        upstream__replicas=json.dumps([second]),
        routing__policy=policy,
        **FAST,
    )

    def kill(url: str) -> None:
        kill_tree(servers[url].process)

    def restart(url: str) -> None:
        servers[url] = standin_at(int(url.rsplit(":", 1)[1]), tmp_path, *STANDIN_ARGS)
        started.append(servers[url])

    try:
        adapters = {}
        for name in ("hot", "late"):
            (tmp_path / name).mkdir()  # the stand-in loads only adapters whose folder exists
            adapters[name] = tenant_with_adapter(
                gateway, f"{name}-lora", tmp_path / name, f"{name}-{policy}"
            )
        await Failover(
            gateway,
            adapters["hot"],
            adapters["late"],
            kill,
            restart,
            STREAM_BODY,
            answer_body,
            answered_by_the_adapter,
        ).run()
    finally:
        gateway.stop()
        for server in started:
            server.stop()
