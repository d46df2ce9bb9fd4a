"""Choose the replica for one request: the routing decision, kept free of I/O.

A routing policy is a `RoutingPolicy` subclass, apart from the transport and the router
that call its `pick`; `routing_policy` builds the one `routing.policy` names. Both policies
pick among the same candidates: the healthy replicas the request has not been refused by
yet, narrowed to those serving its base model and, for an adapter that is not registered
(vLLM was started with it, so the gateway cannot load it), to those that hold it -- each
narrowing only when some replica is left by it.

`AffinityPolicy` (the default) gives each candidate a cost and takes the cheapest:

    cost = requests this gateway has in flight there
         + waiting_weight * vllm:num_requests_waiting
         + kv_cache_weight * vllm:kv_cache_usage_perc
         + what the adapter costs there:
             0               it runs in a vLLM LoRA slot now, or is being loaded there
             1               loaded, not running: vLLM swaps it into a slot
             miss            not loaded, a slot is free (or it is loaded from an old path)
             2 * miss        not loaded, the LRU idle adapter must be unloaded first
             4 * miss        not loaded, every slot busy: the replica goes over its slots

with miss = `adapter_miss_cost`. An adapter therefore stays where it is loaded until that
replica is `miss` requests busier than another, and only then spreads to a second replica:
a hot adapter scales out, a cold one costs no loads. Equal costs go round-robin (the scan
starts one further each time), so an idle pool shares the work.

`RoundRobinPolicy` takes the next candidate whatever its load or the adapters it holds: the
benchmark's baseline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence

from gateway.replicas.replica import Replica
from gateway.settings import RoutingSettings

SWAP_COST = 1.0
EVICT_FACTOR = 2.0
OVERFLOW_FACTOR = 4.0

Capacity = Callable[[Replica], int | None]
IsRegistered = Callable[[str], bool]


class RoutingPolicy(ABC):
    """How the router chooses a replica: one subclass per `routing.policy`.

    `pick` narrows the candidates the same way for every policy; `_choose` is the policy's
    own decision among them.
    """

    def __init__(self) -> None:
        self._turn = 0

    def pick(
        self,
        replicas: Sequence[Replica],
        base_model: str | None,
        adapter: str | None,
        path: str | None,
        exclude: Collection[Replica] = (),
    ) -> Replica | None:
        """The replica for a request; `path` is the registered adapter's (None: unregistered).

        None when no healthy replica is left.
        """
        candidates = [r for r in replicas if r.healthy and r not in exclude]
        if not candidates:
            return None
        if base_model is not None:
            candidates = [r for r in candidates if base_model in r.base_models] or candidates
        if adapter is not None and path is None:
            candidates = [r for r in candidates if adapter in r.adapters] or candidates
        self._turn += 1
        return self._choose(candidates, self._turn % len(candidates), adapter, path)

    @abstractmethod
    def _choose(
        self, candidates: Sequence[Replica], start: int, adapter: str | None, path: str | None
    ) -> Replica:
        """One of `candidates` (never empty); `start` moves one further each request, so a
        scan from it shares equal choices out."""


class RoundRobinPolicy(RoutingPolicy):
    """The next candidate, whatever its load or the adapters it holds."""

    def _choose(
        self, candidates: Sequence[Replica], start: int, adapter: str | None, path: str | None
    ) -> Replica:
        return candidates[start]


class AffinityPolicy(RoutingPolicy):
    """The cheapest candidate by load and what the adapter costs there (the module says how)."""

    def __init__(
        self, settings: RoutingSettings, capacity: Capacity, is_registered: IsRegistered
    ) -> None:
        super().__init__()
        self._waiting_weight = settings.waiting_weight
        self._kv_weight = settings.kv_cache_weight
        self._miss = settings.adapter_miss_cost
        self._capacity = capacity
        self._is_registered = is_registered

    def _choose(
        self, candidates: Sequence[Replica], start: int, adapter: str | None, path: str | None
    ) -> Replica:
        count = len(candidates)
        best = candidates[start]
        best_cost = float("inf")
        for offset in range(count):
            replica = candidates[(start + offset) % count]
            cost = (
                replica.outstanding
                + self._waiting_weight * replica.waiting
                + self._kv_weight * replica.kv_cache_usage
            )
            if adapter is not None:
                cost += self._adapter_cost(replica, adapter, path)
            if cost < best_cost:
                best, best_cost = replica, cost
        return best

    def _adapter_cost(self, replica: Replica, adapter: str, path: str | None) -> float:
        if replica.holds(adapter, path):
            return 0.0 if adapter in replica.running or adapter in replica.loading else SWAP_COST
        capacity = self._capacity(replica)
        if adapter in replica.adapters or capacity is None or replica.occupied() < capacity:
            return self._miss
        if any(self._is_registered(name) for name in replica.idle_adapters()):
            return EVICT_FACTOR * self._miss
        return OVERFLOW_FACTOR * self._miss


def routing_policy(
    settings: RoutingSettings, capacity: Capacity, is_registered: IsRegistered
) -> RoutingPolicy:
    """The policy `settings.policy` names."""
    match settings.policy:
        case "affinity":
            return AffinityPolicy(settings, capacity, is_registered)
        case "round_robin":
            return RoundRobinPolicy()
