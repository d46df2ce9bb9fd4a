"""The prefix-aware policy on replicas built by hand: requests that share a prompt prefix go
where it was sent before, while load, health and tenants still decide."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from gateway.replicas.replica import Replica
from gateway.replicas.selection import PREFIX_BLOCKS, AffinityPolicy, PrefixAwarePolicy
from gateway.settings import RoutingSettings
from tests.gateway.replicas.test_selection import PATH, replica

BLOCK = 64
SYSTEM = "You are the support assistant of ACME. " * 40  # well over the hashed prefix
MISS = 8.0


def prefix_policy(**settings: Any) -> PrefixAwarePolicy:
    config = RoutingSettings(prefix_chars=BLOCK * PREFIX_BLOCKS, prefix_miss_cost=MISS, **settings)
    return PrefixAwarePolicy(config, lambda r: r.max_lora, lambda _: True)


def chat(*messages: tuple[str, str], model: str = "chat") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": r, "content": c} for r, c in messages]}


def conversation(question: str, system: str = SYSTEM) -> dict[str, Any]:
    return chat(("system", system), ("user", question))


def route(
    policy: PrefixAwarePolicy | AffinityPolicy,
    replicas: list[Replica],
    body: dict[str, Any],
    tenant: str = "acme",
    adapter: str | None = None,
) -> str:
    chosen = policy.pick(
        replicas, "base", adapter, PATH if adapter else None, (), policy.prefix_of(tenant, body)
    )
    assert chosen is not None
    return chosen.url


def test_requests_sharing_a_system_prompt_stay_on_one_replica() -> None:
    replicas = [replica("one"), replica("two")]
    policy = prefix_policy()
    urls = Counter(route(policy, replicas, conversation(f"question {n}")) for n in range(10))
    assert len(urls) == 1
    # the load-only policy spreads the same requests (equal costs go round-robin)
    affinity = AffinityPolicy(RoutingSettings(), lambda r: None, lambda _: True)
    spread = Counter(route(affinity, replicas, conversation(f"question {n}")) for n in range(10))
    assert spread == {"http://one": 5, "http://two": 5}


def test_a_conversations_next_turn_follows_its_history() -> None:
    replicas = [replica("one"), replica("two")]
    policy = prefix_policy()
    first = conversation("why is the sky blue? " * 10, system="Be brief. " * 20)
    home = route(policy, replicas, first)
    other = next(r for r in replicas if r.url != home)
    # the other replica looks 2 requests idler; the history's 6 blocks of 16 are worth 3
    other.outstanding = -2
    follow_up = chat(*[(m["role"], m["content"]) for m in first["messages"]], ("user", "and?"))
    assert route(policy, replicas, follow_up) == home


def test_an_overloaded_home_spreads_the_prefix() -> None:
    replicas = [replica("one"), replica("two")]
    policy = prefix_policy()
    home = route(policy, replicas, conversation("first"))
    busy = next(r for r in replicas if r.url == home)
    busy.outstanding = int(MISS) + 1
    assert route(policy, replicas, conversation("second")) != home


def test_another_tenant_with_the_same_text_is_not_drawn_to_it() -> None:
    policy = prefix_policy()
    body = conversation("same words")
    mine, theirs = policy.prefix_of("acme", body), policy.prefix_of("globex", body)
    assert mine and theirs and not set(mine) & set(theirs)
    replicas = [replica("one"), replica("two")]
    home = route(policy, replicas, body, tenant="acme")
    next(r for r in replicas if r.url == home).outstanding = 1
    # globex's request finds no prefix of its own anywhere: load alone decides
    assert route(policy, replicas, body, tenant="globex") != home


def test_the_same_text_for_another_model_is_another_prefix() -> None:
    policy = prefix_policy()
    body = conversation("hello")
    other_model = {**body, "model": "other"}
    assert not set(policy.prefix_of("acme", body)) & set(policy.prefix_of("acme", other_model))


def test_an_unhealthy_home_falls_back_to_another_replica() -> None:
    replicas = [replica("one"), replica("two")]
    policy = prefix_policy()
    home = route(policy, replicas, conversation("first"))
    next(r for r in replicas if r.url == home).healthy = False
    fallback = route(policy, replicas, conversation("second"))
    assert fallback != home
    # the prefix now lives on the fallback too: it stays there
    assert route(policy, replicas, conversation("third")) == fallback


@pytest.mark.parametrize(("adapter_miss", "chosen"), [(16.0, "holder"), (4.0, "empty")])
def test_the_adapter_counts_with_the_prefix(adapter_miss: float, chosen: str) -> None:
    holder, empty = replica("holder", "a", slots=4), replica("empty", slots=4)
    policy = prefix_policy(adapter_miss_cost=adapter_miss)
    policy.pick([empty], "base", "a", PATH, (), policy.prefix_of("acme", conversation("x")))
    # the prefix was sent to `empty`, the adapter is loaded on `holder` (a swap into a slot
    # costs 1 there): the cheaper of loading the adapter and prefilling the prefix (8) wins
    assert route(policy, [holder, empty], conversation("y"), adapter="a") == f"http://{chosen}"


def test_only_a_bounded_prefix_is_hashed_in_full_blocks() -> None:
    policy = prefix_policy()
    assert policy.prefix_of("acme", chat(("user", "x" * (BLOCK - 10)))) == ()
    long = policy.prefix_of("acme", chat(("user", "y" * 10**6)))
    assert len(long) == PREFIX_BLOCKS
    differs_later = policy.prefix_of("acme", chat(("user", "y" * 10**5 + "z")))
    assert differs_later == long


def test_every_surfaces_prompt_fields_are_read() -> None:
    policy = prefix_policy()
    text = "w" * (BLOCK * 2)
    part = {"type": "input_text", "text": text}
    bodies = [
        {"model": "m", "prompt": text},
        {"model": "m", "prompt": [text]},
        {"model": "m", "input": text},
        {"model": "m", "instructions": text},
        {"model": "m", "system": [{"type": "text", "text": text}]},
        {"model": "m", "messages": [{"role": "user", "content": [part]}]},
        {"model": "m", "input": [{"role": "user", "content": [part]}]},
    ]
    for body in bodies:
        assert len(policy.prefix_of("acme", body)) == 2, body
    assert policy.prefix_of("acme", {"model": "m", "prompt": [1, 2, 3] * 500}) == ()


def test_the_memory_of_prefixes_is_bounded() -> None:
    replicas = [replica("one"), replica("two")]
    remembers_one = prefix_policy(prefix_entries=PREFIX_BLOCKS)
    remembers_two = prefix_policy(prefix_entries=2 * PREFIX_BLOCKS)
    for policy in (remembers_one, remembers_two):
        home = route(policy, replicas, conversation("a", system="A" * 4096))
        route(policy, replicas, conversation("b", system="B" * 4096))
        next(r for r in replicas if r.url == home).outstanding = 1
        routed = route(policy, replicas, conversation("a", system="A" * 4096))
        next(r for r in replicas if r.url == home).outstanding = 0
        # B's blocks pushed A's out of the smaller memory: the load alone decides there
        assert (routed == home) is (policy is remembers_two)
