"""Two real vLLM CPU replicas (the tiny model, adapters loaded at runtime by the gateway) behind
a real gateway process, for each routing policy: one replica is killed (SIGKILL, its engine
process too) while streams run on it. Its streams end with an error event in OpenAI's shape
and the others run to their end; it is ejected; every request goes to the survivor, which loads
an adapter first used meanwhile; started again on its port, it is re-admitted with its adapters
re-applied before any request needs them, and serves again. Greedy outputs (float32) equal the
HF golden ones on both replicas, before and after. The steps are tests/fixtures/failover.py's,
shared with the stand-in version (tests/gateway/routing/test_replica_failover.py).

The two vLLMs are this module's own (the session's shared one cannot be killed), one pinned to
each core; each takes about 1.4 GB RSS (API server and engine) and 30-150 s to start here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.procfs import descendants
from tests.fixtures.failover import Failover, kill_tree
from tests.fixtures.gateway import start_gateway, tenant_with_adapter
from tests.fixtures.real_vllm import READY_TIMEOUT_S, tiny_model_config
from tests.fixtures.replicas import served_adapters, unload
from vllm_server import tiny_model
from vllm_server.launcher import TINY_MODEL_DIR, VllmConfig, VllmServer, default_venv, venv_python

pytestmark = pytest.mark.vllm

PROMPTS = ["def main():", "import os", "class Tree:", "for i in range"]
MAX_TOKENS = 12
# Several seconds of generation on 2 cores: every stream is still running at the kill.
STREAM_BODY = {"prompt": "def main():", "max_tokens": 480, "ignore_eos": True}
HOT, LATE = "tenant-a", "tenant-b"  # the tiny model's adapters; vLLM starts with none
# the last LoRA slot stays empty: vLLM CPU's LoRA bug (vllm_server/launcher.py, lora_slots)
ROUTING = {
    "routing__spare_lora_slots": "1",
    "routing__health_interval_s": "0.5",
    "routing__scrape_interval_s": "0.5",
    "routing__registry_refresh_s": "0.5",
}


@dataclass
class Replicas:
    """The module's two vLLMs by URL, each restartable on its port and core."""

    log_dir: Path
    configs: dict[str, tuple[VllmConfig, str]] = field(default_factory=dict)
    servers: dict[str, VllmServer] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)  # every PID under each one started

    def start(self, config: VllmConfig, core: str) -> str:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("VLLM_CPU_OMP_THREADS_BIND", core)  # read by vLLM as it starts
            log_path = self.log_dir / f"vllm-{config.port}-{len(self.started)}.log"
            server = VllmServer.start(config, log_path, READY_TIMEOUT_S)
        self.configs[server.url] = (config, core)
        self.servers[server.url] = server
        self.started += [server.process.pid, *descendants(server.process.pid)]
        return server.url

    def kill(self, url: str) -> None:
        kill_tree(self.servers[url].process)

    def restart(self, url: str) -> None:
        self.start(*self.configs[url])

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        for pid in self.started:  # engines orphaned by a stop that did not reach them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    python = venv_python(default_venv())
    started = Replicas(tmp_path_factory.mktemp("replicas"))
    try:
        for core in ("0", "1"):
            config = tiny_model_config(
                python, max_loras=3, max_lora_rank=8, runtime_lora_updating=True
            )
            started.start(config, core)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def golden() -> dict[str, list[tiny_model.GoldenCompletion]]:
    return tiny_model.golden_with(venv_python(default_venv()), TINY_MODEL_DIR, PROMPTS, MAX_TOKENS)


@pytest.fixture
def clean_replicas(replicas: Replicas) -> Replicas:
    """Each policy's run starts with both replicas up (a failed run may have left one
    killed) and no adapter on either."""
    for url, server in list(replicas.servers.items()):
        if server.process.poll() is not None:
            replicas.restart(url)
    for url in replicas.servers:
        for name in served_adapters(url):
            unload(url, name)
    return replicas


def answer_body(index: int) -> dict[str, Any]:
    prompt = PROMPTS[index % len(PROMPTS)]
    return {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "return_token_ids": True}


@pytest.mark.parametrize("policy", ["round_robin", "affinity", "prefix"])
async def test_a_replica_killed_mid_stream_is_ejected_then_readmitted_with_its_adapters(
    policy: str,
    clean_replicas: Replicas,
    golden: dict[str, list[tiny_model.GoldenCompletion]],
    tmp_path: Path,
) -> None:
    first, second = clean_replicas.servers
    gateway = start_gateway(
        first, tmp_path, upstream__replicas=json.dumps([second]), routing__policy=policy, **ROUTING
    )
    # the fixture tenant maps the base model only: the adapters are the test's tenants' own
    base_only = {"models": {"base": {"base_model": "base"}}}
    gateway.admin("PATCH", f"/tenants/{gateway.tenant_id}", json=base_only).raise_for_status()

    def greedy_of_the_adapter(adapter: str, index: int, body: dict[str, Any]) -> None:
        assert body["model"] == "assistant", body
        expected = golden[adapter][index % len(PROMPTS)].token_ids
        assert body["choices"][0]["token_ids"] == expected, (adapter, index)

    try:
        adapters = tiny_model.adapter_dirs(TINY_MODEL_DIR)
        hot, late = (
            tenant_with_adapter(gateway, name, adapters[name], f"{name}-{policy}")
            for name in (HOT, LATE)
        )
        await Failover(
            gateway,
            hot,
            late,
            clean_replicas.kill,
            clean_replicas.restart,
            STREAM_BODY,
            answer_body,
            greedy_of_the_adapter,
        ).run()
    finally:
        gateway.stop()
