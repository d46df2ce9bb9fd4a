"""Choose the replica for one request: the routing decision, kept free of I/O.

A routing policy is a `RoutingPolicy` subclass, apart from the transport and the router
that call its `pick`; `routing_policy` builds the one `routing.policy` names. Both policies
pick among the same candidates: the healthy replicas the request has not been refused by
yet, narrowed to those serving its base model and, for an adapter that is not registered
(vLLM was started with it, so the gateway cannot load it), to those that hold it -- each
narrowing only when some replica is left by it.

`AffinityPolicy` (the default) gives each candidate a cost and takes the cheapest:

    cost = requests this process has in flight there, times the deployment's processes
         + waiting_weight * vllm:num_requests_waiting
         + kv_cache_weight * vllm:kv_cache_usage_perc
         + what the adapter costs there:
             0               it runs in a vLLM LoRA slot now, or is being loaded there
             1               loaded, not running: vLLM swaps it into a slot
             miss            not loaded, a slot is free (or it is loaded from an old path)
             2 * miss        not loaded, the LRU idle adapter must be unloaded first
             4 * miss        not loaded, every slot busy: the replica goes over its slots

with miss = `adapter_miss_cost`. A process sees only its own requests in flight; connections
are spread evenly over the workers (gateway/workers.py) and instances, so its count times the
number of processes (gateway/peers.py) estimates the deployment's, which the costs compare:
several workers route as one would. An adapter therefore stays where it is loaded until that
replica is `miss` requests busier than another, and only then spreads to a second replica:
a hot adapter scales out, a cold one costs no loads. Equal costs go round-robin (the scan
starts one further each time), so an idle pool shares the work.

`PrefixAwarePolicy` adds to that cost what the request's prompt prefix costs there, so that
requests sharing a prefix (a tenant's system prompt, a conversation's history) go where vLLM
has it in its prefix cache:

    + prefix_miss_cost * (share of the request's prefix blocks the replica has not been sent)

The prefix is the start of the prompt's texts (instructions, system, messages, input,
prompt, in that order, each after its role): at most `prefix_chars` characters, of their UTF-8
at most `prefix_chars` bytes, cut into `PREFIX_BLOCKS` blocks of equal size and hashed
as a chain seeded with the tenant and the model it names: vLLM's prefix cache is per adapter,
and the tenant's `cache_salt` confines it to that tenant, so only the tenant's own prefixes on
the same model can match. The policy remembers (bounded, least recently used first out) which
replica each block was last sent to; a replica that got block i got blocks 1..i-1 with it.
Only full blocks count, as vLLM caches only full blocks. A prefix stays on its replica until
that one is `prefix_miss_cost` requests busier than another, as an adapter does. The memory is
per gateway process, so each worker learns on its own; the hashes (CRC-32, not Python's
per-process `hash`) are the same in every process, and a prefix remembered nowhere starts the
scan of equal costs at the replica its first block names, so that the workers of a gateway
(and its instances) send a new prefix to the same replica while loads are even.

`RoundRobinPolicy` takes the next candidate whatever its load or the adapters it holds: the
benchmark's baseline.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from gateway.replicas.replica import Replica
from gateway.settings import RoutingSettings

SWAP_COST = 1.0
EVICT_FACTOR = 2.0
OVERFLOW_FACTOR = 4.0
PREFIX_BLOCKS = 16
# Prompt fields, in the order the model reads them (Responses, Anthropic, chat, completions).
_PROMPT_FIELDS = ("instructions", "system", "messages", "input", "prompt")

Capacity = Callable[[Replica], int | None]
IsRegistered = Callable[[str], bool]
# The chained hashes of a prompt's full prefix blocks, first block first (empty: no prefix).
PrefixBlocks = tuple[int, ...]


class RoutingPolicy(ABC):
    """How the router chooses a replica: one subclass per `routing.policy`.

    `pick` narrows the candidates the same way for every policy; `_choose` is the policy's
    own decision among them.
    """

    def __init__(self) -> None:
        self._turn = 0

    def prefix_of(self, tenant: str | None, body: Mapping[str, Any]) -> PrefixBlocks:
        """The prefix blocks of a request of `tenant` (its parsed `body`), for a policy that
        routes by them (this one does not: nothing is hashed)."""
        return ()

    def pick(
        self,
        replicas: Sequence[Replica],
        base_model: str | None,
        adapter: str | None,
        path: str | None,
        exclude: Collection[Replica] = (),
        prefix: PrefixBlocks = (),
    ) -> Replica | None:
        """The replica for a request; `path` is the registered adapter's (None: unregistered),
        `prefix` its `prefix_of`.

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
        return self._choose(candidates, self._turn % len(candidates), adapter, path, prefix)

    @abstractmethod
    def _choose(
        self,
        candidates: Sequence[Replica],
        start: int,
        adapter: str | None,
        path: str | None,
        prefix: PrefixBlocks,
    ) -> Replica:
        """One of `candidates` (never empty); `start` moves one further each request, so a
        scan from it shares equal choices out."""


class RoundRobinPolicy(RoutingPolicy):
    """The next candidate, whatever its load or the adapters it holds."""

    def _choose(
        self,
        candidates: Sequence[Replica],
        start: int,
        adapter: str | None,
        path: str | None,
        prefix: PrefixBlocks,
    ) -> Replica:
        return candidates[start]


class AffinityPolicy(RoutingPolicy):
    """The cheapest candidate by load and what the adapter costs there (the module says how).
    `processes()`: how many gateway processes share the replicas."""

    def __init__(
        self,
        settings: RoutingSettings,
        capacity: Capacity,
        is_registered: IsRegistered,
        processes: Callable[[], int] = lambda: 1,
    ) -> None:
        super().__init__()
        self._processes = processes
        self._waiting_weight = settings.waiting_weight
        self._kv_weight = settings.kv_cache_weight
        self._miss = settings.adapter_miss_cost
        self._capacity = capacity
        self._is_registered = is_registered

    def _choose(
        self,
        candidates: Sequence[Replica],
        start: int,
        adapter: str | None,
        path: str | None,
        prefix: PrefixBlocks,
    ) -> Replica:
        return _cheapest(candidates, start, lambda replica: self._cost(replica, adapter, path))

    def _cost(self, replica: Replica, adapter: str | None, path: str | None) -> float:
        cost = (
            replica.outstanding * self._processes()
            + self._waiting_weight * replica.waiting
            + self._kv_weight * replica.kv_cache_usage
        )
        if adapter is not None:
            cost += self._adapter_cost(replica, adapter, path)
        return cost

    def _adapter_cost(self, replica: Replica, adapter: str, path: str | None) -> float:
        if replica.holds(adapter, path):
            return 0.0 if adapter in replica.running or adapter in replica.loading else SWAP_COST
        capacity = self._capacity(replica)
        if adapter in replica.adapters or capacity is None or replica.occupied() < capacity:
            return self._miss
        if any(self._is_registered(name) for name in replica.idle_adapters()):
            return EVICT_FACTOR * self._miss
        return OVERFLOW_FACTOR * self._miss


class PrefixAwarePolicy(AffinityPolicy):
    """The cheapest candidate by load, the adapter and the cached prompt prefix (the module
    says how)."""

    def __init__(
        self,
        settings: RoutingSettings,
        capacity: Capacity,
        is_registered: IsRegistered,
        processes: Callable[[], int] = lambda: 1,
    ) -> None:
        super().__init__(settings, capacity, is_registered, processes)
        self._block_chars = max(1, settings.prefix_chars // PREFIX_BLOCKS)
        self._prefix_chars = self._block_chars * PREFIX_BLOCKS
        self._prefix_miss = settings.prefix_miss_cost
        self._entries = settings.prefix_entries
        self._homes: OrderedDict[int, str] = OrderedDict()  # block -> replica URL, LRU first

    def prefix_of(self, tenant: str | None, body: Mapping[str, Any]) -> PrefixBlocks:
        data = _prompt_prefix(body, self._prefix_chars).encode(errors="surrogatepass")
        size = self._block_chars
        chained = zlib.crc32(f"{tenant}\x00{body.get('model')}".encode(errors="surrogatepass"))
        blocks = []
        for end in range(size, min(len(data), self._prefix_chars) + 1, size):
            chained = zlib.crc32(data[end - size : end], chained)
            blocks.append(chained)
        return tuple(blocks)

    def _choose(
        self,
        candidates: Sequence[Replica],
        start: int,
        adapter: str | None,
        path: str | None,
        prefix: PrefixBlocks,
    ) -> Replica:
        if not prefix:
            return super()._choose(candidates, start, adapter, path, prefix)
        cached = self._cached_blocks(prefix)
        if not cached:  # a new prefix: every gateway process starts its scan at one replica
            start = prefix[0] % len(candidates)
        per_block = self._prefix_miss / len(prefix)
        best = _cheapest(
            candidates,
            start,
            lambda replica: (
                self._cost(replica, adapter, path)
                + per_block * (len(prefix) - cached.get(replica.url, 0))
            ),
        )
        self._remember(prefix, best.url)
        return best

    def _cached_blocks(self, prefix: PrefixBlocks) -> dict[str, int]:
        """Replica URL -> how many of the prefix's first blocks it was sent, as remembered."""
        cached: dict[str, int] = {}
        for depth, block in enumerate(prefix, start=1):
            url = self._homes.get(block)
            if url is None:
                break
            cached[url] = depth
        return cached

    def _remember(self, prefix: PrefixBlocks, url: str) -> None:
        homes = self._homes
        for block in prefix:
            homes[block] = url
            homes.move_to_end(block)
        while len(homes) > self._entries:
            homes.popitem(last=False)


def _cheapest(
    candidates: Sequence[Replica], start: int, cost: Callable[[Replica], float]
) -> Replica:
    """The candidate of the lowest cost; of equal ones, the first from `start` on."""
    count = len(candidates)
    best = candidates[start]
    best_cost = float("inf")
    for offset in range(count):
        replica = candidates[(start + offset) % count]
        replica_cost = cost(replica)
        if replica_cost < best_cost:
            best, best_cost = replica, replica_cost
    return best


def _prompt_prefix(body: Mapping[str, Any], limit: int) -> str:
    """The first `limit` characters of the prompt's texts, each text after its role: no more
    of the body is read than that."""
    parts: list[str] = []
    size = 0
    for name in _PROMPT_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        for role, text in _texts(name, value):
            parts.append(f"\x1e{role}\x1f{text[: limit - size]}")
            size += len(parts[-1])
            if size >= limit:
                return "".join(parts)[:limit]
    return "".join(parts)


def _texts(role: str, value: Any) -> Iterator[tuple[str, str]]:
    """(role, text) of a prompt field: a string, a list of strings, of content parts
    ({"text": ...}) or of messages ({"role": ..., "content": ...}); anything else (token ids,
    images) is skipped."""
    if isinstance(value, str):
        yield role, value
        return
    if not isinstance(value, list):
        return
    for item in value:
        if isinstance(item, str):
            yield role, item
        elif isinstance(item, dict):
            if "content" in item:
                yield from _texts(str(item.get("role", role)), item["content"])
            elif isinstance(item.get("text"), str):
                yield role, item["text"]


def routing_policy(
    settings: RoutingSettings,
    capacity: Capacity,
    is_registered: IsRegistered,
    processes: Callable[[], int] = lambda: 1,
) -> RoutingPolicy:
    """The policy `settings.policy` names."""
    match settings.policy:
        case "affinity":
            return AffinityPolicy(settings, capacity, is_registered, processes)
        case "prefix":
            return PrefixAwarePolicy(settings, capacity, is_registered, processes)
        case "round_robin":
            return RoundRobinPolicy()
