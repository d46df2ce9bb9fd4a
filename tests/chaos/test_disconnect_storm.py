"""A storm of streams whose clients hang up after the first chunk, with normal streams in
between: the gateway's memory and open file descriptors stay flat after the warm-up, every
hung-up request is aborted upstream, and the normal client is not affected."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.chaos.expectations import Expectations
from tests.chaos.load import Outcome, bearer, chat_body, counts
from tests.chaos.report import ChaosReport
from tests.chaos.rounds import Steady, flood_in_rounds
from tests.fixtures.gateway import Gateway
from tests.fixtures.metrics import metric_value
from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults

HANG_UPS_PER_ROUND = 1000  # 3 rounds: a warm-up and two more
CONCURRENCY = 32
ITL_MS = 20
HANG_UP_TOKENS = 100  # 2 s if nobody hung up
NORMAL_CLIENTS = 2
MAX_RSS_GROWTH = 0.10  # from the end of the warm-up (first third) to the end
# Open fds allowed over the count after the warm-up: a socket for each storm connection and
# its upstream one, the same for the normal clients; a leak per hang-up would be thousands.
MAX_EXTRA_FDS = 2 * (CONCURRENCY + NORMAL_CLIENTS)
ABORT_WAIT_S = 10.0


async def hang_up_after_first_chunk(
    session: aiohttp.ClientSession, gateway: Gateway, body: dict[str, object]
) -> str:
    try:
        async with session.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers=bearer(gateway.api_key),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            await response.content.readany()
            response.close()  # the connection goes with it: the gateway sees a disconnect
            return str(response.status)
    except (aiohttp.ClientError, TimeoutError) as error:
        return type(error).__name__


def complete_stream(outcome: Outcome) -> bool:
    return outcome.status == 200 and outcome.stream_done and not outcome.failure


async def test_disconnect_storm(
    standin: ServerProcess, gateway: Gateway, chaos_report: ChaosReport
) -> None:
    set_faults(standin, itl_ms=ITL_MS)
    hang_up_body = chat_body(stream=True, max_tokens=HANG_UP_TOKENS)
    normal_body = chat_body(stream=True, max_tokens=8)
    normal_streams = Steady("normal", normal_body, clients=NORMAL_CLIENTS, max_per_client=10_000)
    started = time.monotonic()
    storm = await flood_in_rounds(
        gateway,
        HANG_UPS_PER_ROUND,
        CONCURRENCY,
        lambda session: hang_up_after_first_chunk(session, gateway, hang_up_body),
        normal_streams,
    )
    normal = storm.steady
    storm_s = time.monotonic() - started
    deadline = time.monotonic() + ABORT_WAIT_S
    while metric_value(standin.url, "vllm:num_requests_running") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    still_running = metric_value(standin.url, "vllm:num_requests_running")

    rss_growth = storm.rss_growth()
    chaos_report.record(
        "5 disconnect storm",
        hang_ups=storm.calls,
        storm_s=round(storm_s, 1),
        hang_up_statuses=dict(storm.labels),
        normal_streams=counts(normal),
        rss_mib_at_start_and_after_each_third=storm.rss_mib(),
        open_fds_at_start_and_after_each_third=[s.open_fds for s in storm.samples],
        rss_growth_after_warm_up=round(rss_growth, 3),
        upstream_requests_still_running=still_running,
    )
    expect = Expectations()
    storm.check_every_call(expect, "200", "every hung-up stream had started")
    expect.that(
        rss_growth < MAX_RSS_GROWTH,
        f"RSS grew less than {MAX_RSS_GROWTH:.0%} after the warm-up",
        storm.rss_mib(),
    )
    expect.that(
        storm.last.open_fds <= storm.warmed_up.open_fds + MAX_EXTRA_FDS,
        f"open fds at most {MAX_EXTRA_FDS} over the warm-up's",
        [s.open_fds for s in storm.samples],
    )
    expect.that(still_running == 0, "every hung-up request was aborted upstream", still_running)
    expect.that(
        bool(normal) and all(complete_stream(outcome) for outcome in normal),
        "every normal stream completed",
        counts(normal),
    )
    expect.verify()
