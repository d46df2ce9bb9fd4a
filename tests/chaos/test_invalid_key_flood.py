"""A flood of distinct made-up `sk-...` keys: every one is refused with 401 in the OpenAI
format, the gateway's memory stays bounded, and a valid key's requests keep being served."""

from __future__ import annotations

import secrets

import aiohttp

from tests.chaos.expectations import Expectations
from tests.chaos.load import bearer, chat_body, counts
from tests.chaos.report import ChaosReport
from tests.chaos.rounds import ROUNDS, Steady, flood_in_rounds
from tests.fixtures.gateway import Gateway

INVALID_KEYS_PER_ROUND = 10_000  # 3 rounds: a warm-up and two more
CONCURRENCY = 32
# What the gateway may keep per made-up key after the warm-up (first round): about one
# negative cache entry, a 64-character digest and its expiry in a dict, ~200 bytes. Anything
# kept per key beyond that (a metrics label, a log record, a lock) goes past it; the cache
# itself is bounded by its entry count.
MAX_BYTES_PER_INVALID_KEY = 512


async def made_up_key(session: aiohttp.ClientSession, gateway: Gateway) -> str:
    try:
        async with session.post(
            gateway.url + "/v1/chat/completions",
            json=chat_body(),
            headers=bearer("sk-" + secrets.token_urlsafe(32)),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            error = (await response.json()).get("error") or {}
            return f"{response.status} {error.get('code')}"
    except (aiohttp.ClientError, TimeoutError) as error:
        return type(error).__name__


async def test_flood_of_invalid_keys(gateway: Gateway, chaos_report: ChaosReport) -> None:
    flood = await flood_in_rounds(
        gateway,
        INVALID_KEYS_PER_ROUND,
        CONCURRENCY,
        lambda session: made_up_key(session, gateway),
        Steady("valid key", chat_body(), clients=1, max_per_client=100_000),
    )
    valid = flood.steady
    keys_after_warm_up = INVALID_KEYS_PER_ROUND * (ROUNDS - 1)
    bytes_per_key = (flood.last.rss_bytes - flood.warmed_up.rss_bytes) / keys_after_warm_up
    chaos_report.record(
        "7 invalid key flood",
        invalid_keys=flood.calls,
        invalid_key_statuses=dict(flood.labels),
        valid_key_statuses=counts(valid),
        rss_mib_at_start_and_after_each_third=flood.rss_mib(),
        rss_growth_after_warm_up=round(flood.rss_growth(), 3),
        rss_bytes_per_invalid_key_after_warm_up=round(bytes_per_key),
    )
    expect = Expectations()
    flood.check_every_call(
        expect, "401 invalid_api_key", "every made-up key gets 401 invalid_api_key"
    )
    expect.that(
        bytes_per_key < MAX_BYTES_PER_INVALID_KEY,
        f"RSS grew by less than {MAX_BYTES_PER_INVALID_KEY} bytes per made-up key after the "
        "warm-up",
        flood.rss_mib(),
    )
    expect.that(
        bool(valid) and all(outcome.status == 200 for outcome in valid),
        "every request of the valid key served throughout",
        counts(valid),
    )
    expect.verify()
