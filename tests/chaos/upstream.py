"""What the upstream scenarios share: requests in flight while vLLM (or the stand-in) breaks,
readiness polled until it says what is expected, and the checks on what the clients saw."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.chaos.expectations import Expectations
from tests.chaos.load import Outcome, Phases, chat_body, chat_request
from tests.fixtures.gateway import Gateway, start_gateway

UPSTREAM_ERRORS = {502, 503, 504}
NOT_ROUTED = "passes its health checks"  # the 503 of a router with no replica admitted
READY_TIMEOUT_S = 30.0


@contextmanager
def gateway_with_timeouts(
    upstream_url: str, log_dir: Path, first_byte_timeout_s: float, stream_idle_timeout_s: float
) -> Iterator[Gateway]:
    """A gateway in front of `upstream_url` with these upstream timeouts (connect: 1 s),
    stopped when the block ends."""
    gateway = start_gateway(
        upstream_url,
        log_dir,
        upstream__first_byte_timeout_s=str(first_byte_timeout_s),
        upstream__stream_idle_timeout_s=str(stream_idle_timeout_s),
        upstream__connect_timeout_s="1",
    )
    try:
        yield gateway
    finally:
        gateway.stop()


@dataclass(frozen=True, slots=True)
class InFlight:
    """Requests in flight when the upstream breaks, each generating exactly its tokens."""

    streams: int
    stream_tokens: int
    wholes: int
    whole_tokens: int
    break_after_s: float  # how long after sending them the upstream breaks


async def in_flight(
    session: aiohttp.ClientSession, gateway: Gateway, phases: Phases, load: InFlight
) -> list[asyncio.Task[Outcome]]:
    """Start the streamed and whole chat requests of `load` and wait its `break_after_s`; the
    tasks end with each request's outcome."""
    stream_body = chat_body(stream=True, max_tokens=load.stream_tokens)
    stream = chat_request(session, "stream", phases, gateway.url, gateway.api_key, stream_body)
    whole_body = chat_body(max_tokens=load.whole_tokens)
    whole = chat_request(session, "whole", phases, gateway.url, gateway.api_key, whole_body)
    tasks = [asyncio.create_task(stream()) for _ in range(load.streams)]
    tasks += [asyncio.create_task(whole()) for _ in range(load.wholes)]
    await asyncio.sleep(load.break_after_s)
    return tasks


@dataclass(frozen=True, slots=True)
class KilledMidFlight:
    """What the clients saw of an upstream killed with requests in flight."""

    broken: list[Outcome]  # the requests in flight when it was killed
    killed_at: float  # time.monotonic()
    readyz_503_after_s: float
    while_down: list[Outcome]  # sent one by one once /readyz said 503

    def figures(self) -> dict[str, float]:
        last_ended = max(outcome.ended for outcome in self.broken)
        return {
            "last_broken_request_ended_after_kill_s": round(last_ended - self.killed_at, 2),
            "readyz_503_after_s": self.readyz_503_after_s,
        }

    def check(self, expect: Expectations, bound_s: float, upstream: str) -> None:
        """The broken requests (see `check_broken_requests`), and every request sent while
        `upstream` is down answered 502/503/504 in the OpenAI format."""
        check_broken_requests(expect, self.broken, self.killed_at, bound_s)
        expect.that(
            all(
                outcome.status in UPSTREAM_ERRORS and outcome.openai_error
                for outcome in self.while_down
            ),
            f"requests while {upstream} is down get 502/503/504",
            sorted({outcome.label for outcome in self.while_down}),
        )
        check_no_500(expect, self.while_down)


async def kill_mid_flight(
    session: aiohttp.ClientSession,
    gateway: Gateway,
    phases: Phases,
    upstream: subprocess.Popen[bytes],
    load: InFlight,
    requests_while_down: int,
) -> KilledMidFlight:
    """Send `load`, SIGKILL `upstream` (by its PID) while it is in flight and wait for those
    requests to end (phase "down" then) and for /readyz to say 503; then send
    `requests_while_down` whole requests one by one."""
    tasks = await in_flight(session, gateway, phases, load)
    upstream.kill()
    killed_at = time.monotonic()
    broken = list(await asyncio.gather(*tasks))
    phases.enter("down")
    readyz_503_after_s = await wait_for_readyz(session, gateway, 503)
    while_down = await one_by_one(session, gateway, phases, "whole", requests_while_down)
    return KilledMidFlight(broken, killed_at, readyz_503_after_s, while_down)


async def one_by_one(
    session: aiohttp.ClientSession, gateway: Gateway, phases: Phases, kind: str, count: int
) -> list[Outcome]:
    """`count` short whole requests, each sent when the previous one is answered."""
    request = chat_request(session, kind, phases, gateway.url, gateway.api_key, chat_body())
    return [await request() for _ in range(count)]


async def wait_for_readyz(session: aiohttp.ClientSession, gateway: Gateway, status: int) -> float:
    """Poll /readyz until it answers `status`; the seconds that took (fails after 30 s)."""
    started = time.monotonic()
    while True:
        try:
            async with session.get(
                gateway.url + "/readyz", timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if response.status == status:
                    return round(time.monotonic() - started, 2)
        except (aiohttp.ClientError, TimeoutError):
            pass
        assert time.monotonic() - started < READY_TIMEOUT_S, f"/readyz never said {status}"
        await asyncio.sleep(0.05)


def check_broken_requests(
    expect: Expectations, outcomes: list[Outcome], broken_at: float, bound_s: float
) -> None:
    """Requests in flight when the upstream broke (at monotonic `broken_at`): every stream ends
    with an error event, every whole request with 502/503/504 in the OpenAI format, all of
    them within `bound_s` of the break."""
    streams = [outcome for outcome in outcomes if outcome.kind == "stream"]
    wholes = [outcome for outcome in outcomes if outcome.kind == "whole"]
    expect.that(
        all(outcome.status == 200 and outcome.stream_error for outcome in streams),
        'every stream ends with a final `data: {"error": ...}` event',
        sorted({outcome.label for outcome in streams}),
    )
    expect.that(
        all(outcome.status in UPSTREAM_ERRORS and outcome.openai_error for outcome in wholes),
        "every whole request gets 502/503/504 in the OpenAI format",
        sorted({outcome.label for outcome in wholes}),
    )
    check_no_500(expect, outcomes)
    latest = max(outcome.ended for outcome in outcomes) - broken_at
    expect.that(
        latest < bound_s, f"every request ended within {bound_s} s of the break", round(latest, 2)
    )


def check_no_500(expect: Expectations, outcomes: list[Outcome]) -> None:
    errors_500 = [outcome.label for outcome in outcomes if outcome.status == 500]
    expect.that(not errors_500, "no HTTP 500", errors_500[:5])


def check_routed_once_ready(expect: Expectations, outcomes: list[Outcome]) -> None:
    """Requests sent once /readyz said 200 are all served: none is refused because the
    router has not admitted the replica yet."""
    not_routed = [outcome for outcome in outcomes if NOT_ROUTED in outcome.message]
    expect.that(
        not not_routed,
        f"no 503 '{NOT_ROUTED}' after /readyz said 200",
        f"{len(not_routed)} of {len(outcomes)}",
    )
    expect.that(
        all(outcome.status == 200 for outcome in outcomes),
        "every request after /readyz said 200 is served",
        [outcome.label for outcome in outcomes],
    )
