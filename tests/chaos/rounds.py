"""A flood sent in rounds, with the gateway process sampled (RSS, open fds) after each one:
the first round is the warm-up, and what grows after it is what the flood leaks. Steady
clients keep calling beside the flood, to show whether it hurts them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.chaos.expectations import Expectations
from tests.chaos.load import Outcome, Phases, chat_request, client_session, closed_loops
from tests.chaos.procfs import ProcessSample, growth, mib, sample
from tests.fixtures.gateway import Gateway

ROUNDS = 3
STEADY_MAX_S = 300.0


async def in_rounds(
    per_round: int, concurrency: int, call: Callable[[], Awaitable[str]], pid: int
) -> tuple[list[ProcessSample], Counter[str]]:
    """ROUNDS rounds of `per_round` calls, `concurrency` at a time; the process `pid` sampled
    before the first round and after each, and how many calls returned each label."""
    samples = [sample(pid)]
    labels: Counter[str] = Counter()

    async def worker(calls: Iterator[int]) -> None:
        for _ in calls:  # shared by the round's workers: together they make `per_round` calls
            labels[await call()] += 1

    for _ in range(ROUNDS):
        calls = iter(range(per_round))
        await asyncio.gather(*(worker(calls) for _ in range(concurrency)))
        samples.append(sample(pid))
    return samples, labels


@dataclass(frozen=True, slots=True)
class Steady:
    """Clients that send one chat request with the gateway's valid key again and again."""

    kind: str
    body: dict[str, Any]
    clients: int
    max_per_client: int


@dataclass(frozen=True, slots=True)
class Flooded:
    calls: int  # flood calls made, in all rounds
    samples: list[ProcessSample]  # the gateway, before the first round and after each
    labels: Counter[str]  # how many flood calls returned each label
    steady: list[Outcome]  # the steady clients' requests

    def check_every_call(self, expect: Expectations, label: str, expectation: str) -> None:
        """Every one of the flood's calls returned `label`."""
        expect.that(self.labels == {label: self.calls}, expectation, dict(self.labels))

    @property
    def warmed_up(self) -> ProcessSample:
        return self.samples[1]

    @property
    def last(self) -> ProcessSample:
        return self.samples[-1]

    def rss_growth(self) -> float:
        """From the end of the warm-up (first round) to the end: see `growth`."""
        return growth(self.warmed_up, self.last)

    def rss_mib(self) -> list[float]:
        return [mib(sampled) for sampled in self.samples]


async def flood_in_rounds(
    gateway: Gateway,
    per_round: int,
    concurrency: int,
    call: Callable[[aiohttp.ClientSession], Awaitable[str]],
    steady: Steady,
) -> Flooded:
    """`in_rounds` of `call` on a session of `concurrency` connections, the gateway's process
    sampled, while the `steady` clients keep calling it on a session of their own."""
    phases = Phases("flood")
    steady_outcomes: list[Outcome] = []
    async with client_session(concurrency) as flood, client_session(steady.clients) as calm:
        request = chat_request(calm, steady.kind, phases, gateway.url, gateway.api_key, steady.body)
        async with closed_loops(
            [request] * steady.clients,
            steady_outcomes,
            max_per_client=steady.max_per_client,
            max_s=STEADY_MAX_S,
        ):
            samples, labels = await in_rounds(
                per_round, concurrency, lambda: call(flood), gateway.server.process.pid
            )
    return Flooded(per_round * ROUNDS, samples, labels, steady_outcomes)
