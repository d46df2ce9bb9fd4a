"""The routing policies on replicas built by hand: no server, no I/O, just the decision."""

from __future__ import annotations

from collections import Counter, OrderedDict

import pytest

from gateway.replicas.replica import Replica
from gateway.replicas.selection import (
    AffinityPolicy,
    PrefixAwarePolicy,
    RoundRobinPolicy,
    RoutingPolicy,
    routing_policy,
)
from gateway.settings import RoutingSettings

MISS = 8.0
PATH = "/adapters/a"


def replica(name: str, *adapters: str, slots: int | None = None, **state: object) -> Replica:
    loaded = OrderedDict((adapter, PATH) for adapter in adapters)
    return Replica(
        f"http://{name}", base_models=frozenset({"base"}), adapters=loaded, max_lora=slots, **state
    )


def affinity(registered: bool = True) -> AffinityPolicy:
    settings = RoutingSettings(adapter_miss_cost=MISS)
    return AffinityPolicy(settings, lambda r: r.max_lora, lambda _: registered)


def policies() -> list[RoutingPolicy]:
    return [affinity(), RoundRobinPolicy()]


def picks(
    policy: RoutingPolicy, replicas: list[Replica], count: int, **request: str
) -> Counter[str]:
    adapter = request.get("adapter")
    path = request.get("path")
    chosen = [policy.pick(replicas, "base", adapter, path) for _ in range(count)]
    return Counter(r.url for r in chosen if r is not None)


@pytest.mark.parametrize(
    ("name", "policy_class"),
    [
        ("affinity", AffinityPolicy),
        ("prefix", PrefixAwarePolicy),
        ("round_robin", RoundRobinPolicy),
    ],
)
def test_the_setting_picks_the_policy(name: str, policy_class: type) -> None:
    settings = RoutingSettings(policy=name)
    assert isinstance(routing_policy(settings, lambda _: None, lambda _: True), policy_class)


@pytest.mark.parametrize("policy", policies())
def test_no_healthy_replica_left_is_none(policy: RoutingPolicy) -> None:
    down, refused = replica("down", healthy=False), replica("refused")
    assert policy.pick([down, refused], "base", None, None, exclude=[refused]) is None


@pytest.mark.parametrize("policy", policies())
def test_every_policy_keeps_to_replicas_serving_the_base_model(policy: RoutingPolicy) -> None:
    other = Replica("http://other", base_models=frozenset({"other"}))
    served = [replica("one"), replica("two")]
    assert picks(policy, [other, *served], 4) == {"http://one": 2, "http://two": 2}


@pytest.mark.parametrize("policy", policies())
def test_an_unregistered_adapter_goes_only_where_it_is(policy: RoutingPolicy) -> None:
    holder = replica("holder", "a", outstanding=10)
    assert picks(policy, [replica("idle"), holder], 3, adapter="a") == {"http://holder": 3}


def test_round_robin_ignores_load_and_adapters() -> None:
    replicas = [replica("busy", outstanding=50), replica("holder", "a"), replica("idle")]
    counts = picks(RoundRobinPolicy(), replicas, 6, adapter="a", path=PATH)
    assert counts == {r.url: 2 for r in replicas}


def test_affinity_takes_the_least_loaded_and_shares_equal_costs() -> None:
    policy = affinity()
    busy, idle = replica("busy", outstanding=2), replica("idle")
    assert picks(policy, [busy, idle], 3) == {"http://idle": 3}
    assert picks(policy, [replica("one"), replica("two")], 4) == {"http://one": 2, "http://two": 2}


def test_affinity_keeps_an_adapter_where_it_is_loaded_until_that_is_miss_busier() -> None:
    policy = affinity()
    running = frozenset({"a"})
    holder = replica("holder", "a", outstanding=int(MISS) - 1, running=running)
    idle = replica("idle")
    assert picks(policy, [idle, holder], 3, adapter="a", path=PATH) == {"http://holder": 3}
    holder.outstanding = int(MISS) + 1
    assert picks(policy, [idle, holder], 3, adapter="a", path=PATH) == {"http://idle": 3}


def test_affinity_unloads_an_idle_adapter_before_going_over_the_slots() -> None:
    full_of_busy = replica("busy", "b", slots=1, in_use=Counter({"b": 1}))
    full_of_idle = replica("idle", "c", slots=1)
    counts = picks(affinity(), [full_of_busy, full_of_idle], 3, adapter="a", path=PATH)
    assert counts == {"http://idle": 3}


def test_a_process_weighs_its_in_flight_requests_by_the_deployments_processes() -> None:
    """Four workers each see a quarter of the requests at a replica: 3 of their own there
    stand for 12, which is past the adapter's miss cost (8), so the adapter spreads as one
    process seeing all 12 would spread it."""
    settings = RoutingSettings(adapter_miss_cost=MISS)
    alone = AffinityPolicy(settings, lambda r: r.max_lora, lambda _: True)
    of_four = AffinityPolicy(settings, lambda r: r.max_lora, lambda _: True, lambda: 4)
    holder = replica("holder", "a", outstanding=3, running=frozenset({"a"}))
    other = replica("other")
    assert picks(alone, [holder, other], 1, adapter="a", path=PATH) == {holder.url: 1}
    assert picks(of_four, [holder, other], 1, adapter="a", path=PATH) == {other.url: 1}
