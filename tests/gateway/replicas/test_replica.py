"""Which adapters a replica may unload: only those no request uses, this process's or, as vLLM
reports them, any other gateway process's."""

from __future__ import annotations

from collections import OrderedDict

from gateway.replicas.metrics import parse_load
from gateway.replicas.replica import Replica

LORA_INFO = (
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="ad-a",'
    'waiting_lora_adapters="ad-c"} 1.7e9\n'
)


def loaded(*names: str) -> Replica:
    return Replica("http://replica", adapters=OrderedDict((name, None) for name in names))


def test_adapters_in_use_here_or_being_loaded_are_not_idle() -> None:
    replica = loaded("ad-a", "ad-b", "ad-c")
    replica.in_use["ad-b"] += 1
    assert replica.idle_adapters() == ["ad-a", "ad-c"]


def test_adapters_vllm_runs_or_queues_for_another_process_are_not_idle() -> None:
    load = parse_load(LORA_INFO)
    assert (load.running_adapters, load.waiting_adapters) == ({"ad-a"}, {"ad-c"})
    replica = loaded("ad-a", "ad-b", "ad-c")
    replica.running, replica.waiting_for = load.running_adapters, load.waiting_adapters
    assert replica.idle_adapters() == ["ad-b"]  # the only one no request is known to use
