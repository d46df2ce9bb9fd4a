"""Safety end to end through a real gateway in front of the echo upstream (which answers with
the caller's own message, streamed in 3-character pieces), with real clients.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fixtures.gateway import ACME_MODELS, Gateway, start_gateway
from tests.fixtures.processes import ServerProcess
from tests.gateway.safety.conftest import echoed_requests

CARD = "4111 1111 1111 1111"
POLICIES = {
    "no-cards-in": {
        "rules": [{"name": "no-cards", "detector": "payment_card", "direction": "input"}]
    },
    "no-fruit-out": {
        "rules": [
            {
                "name": "no-fruit",
                "detector": "deny_terms",
                "direction": "output",
                "terms": ["forbidden fruit"],
            }
        ]
    },
    "mask-mail": {
        "rules": [{"name": "mask", "detector": "email", "direction": "input", "action": "mask"}]
    },
    "redact-cards-out": {
        "rules": [
            {
                "name": "cards-out",
                "detector": "payment_card",
                "direction": "output",
                "action": "redact",
            }
        ]
    },
}


@pytest.fixture(scope="module")
def gw(echo_upstream: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        echo_upstream.url,
        tmp_path_factory.mktemp("safety-http"),
        safety__policies=json.dumps(POLICIES),
    )
    yield gateway
    gateway.stop()


def tenant_key(gw: Gateway, policy: str | None, key_metadata: dict[str, str] | None = None) -> str:
    """A new tenant under `policy` and a key for it; returns the key's secret."""
    tenant = gw.admin(
        "POST",
        "/tenants",
        json={"name": f"t-{uuid.uuid4().hex[:8]}", "models": ACME_MODELS, "safety_policy": policy},
    )
    assert tenant.status_code == 201, tenant.text
    key = gw.admin(
        "POST",
        "/keys",
        json={"tenant_id": tenant.json()["id"], "name": "k", "metadata": key_metadata or {}},
    )
    assert key.status_code == 201, key.text
    return key.json()["secret"]


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def ask(gw: Gateway, key: str, text: str) -> str:
    reply = client(gw, key).chat.completions.create(
        model="base", messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


def stream_events(gw: Gateway, key: str, text: str) -> list[Any]:
    """The raw SSE events of a streamed chat answer: parsed chunks, and "[DONE]"."""
    body = {"model": "base", "messages": [{"role": "user", "content": text}], "stream": True}
    with httpx.stream(
        "POST",
        gw.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        data = response.read()
    events = []
    for event in data.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), f"broken SSE framing: {event!r}"
        events.append("[DONE]" if event == b"data: [DONE]" else orjson.loads(event[6:]))
    return events


def text_of(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event["choices"]
    )


def test_an_input_block_is_a_400_content_policy_violation(
    gw: Gateway, echo_upstream: ServerProcess
) -> None:
    key = tenant_key(gw, "no-cards-in")
    marker = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as caught:
        ask(gw, key, f"{marker}: charge {CARD}")
    error = caught.value
    assert error.status_code == 400
    assert error.code == "content_policy_violation", "the safety stage did not block the input"
    assert "no-cards" in error.message and "4111" not in error.message
    assert not any(marker in json.dumps(body) for body in echoed_requests(echo_upstream))


def test_a_blocked_stream_ends_with_content_filter_then_done(gw: Gateway) -> None:
    key = tenant_key(gw, "no-fruit-out")
    events = stream_events(gw, key, "Let me tell you about the forbidden fruit and more.")
    assert "forbidden" not in text_of(events), "the output was not filtered"
    assert text_of(events) == "Let me tell you about the "
    finishes = [
        c["finish_reason"]
        for e in events
        if isinstance(e, dict)
        for c in e["choices"]
        if c["finish_reason"]
    ]
    assert finishes == ["content_filter"]
    assert events[-1] == "[DONE]"


def test_the_openai_sdk_sees_the_content_filter(gw: Gateway) -> None:
    key = tenant_key(gw, "no-fruit-out")
    stream = client(gw, key).chat.completions.create(
        model="base", messages=[{"role": "user", "content": "The forbidden fruit."}], stream=True
    )
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    whole = client(gw, key).chat.completions.create(
        model="base", messages=[{"role": "user", "content": "The forbidden fruit."}]
    )
    assert (whole.choices[0].finish_reason, whole.choices[0].message.content) == (
        "content_filter",
        "The ",
    )


def test_masked_values_never_reach_the_model_and_come_back(
    gw: Gateway, echo_upstream: ServerProcess
) -> None:
    key = tenant_key(gw, "mask-mail")
    text = "write to ann@example.com and bo@example.org, then ann@example.com again"
    assert ask(gw, key, text) == text
    seen = echoed_requests(echo_upstream)[-1]["messages"][-1]["content"]
    assert seen == "write to [EMAIL_1] and [EMAIL_2], then [EMAIL_1] again", (
        "the upstream saw raw values"
    )
    assert text_of(stream_events(gw, key, text)) == text
    assert "ann@" not in json.dumps(echoed_requests(echo_upstream)[-1])


def test_output_redaction_whole_and_streamed(gw: Gateway) -> None:
    key = tenant_key(gw, "redact-cards-out")
    assert ask(gw, key, f"card {CARD} ok") == "card [REDACTED:CARD] ok"
    assert text_of(stream_events(gw, key, f"card {CARD} ok")) == "card [REDACTED:CARD] ok"


def test_a_key_can_be_taken_out_of_its_tenants_policy(gw: Gateway) -> None:
    key = tenant_key(gw, "no-cards-in", key_metadata={"safety_policy": "none"})
    assert ask(gw, key, f"charge {CARD}") == f"charge {CARD}"


def test_a_policy_stored_through_the_admin_api_applies_at_once(gw: Gateway) -> None:
    put = gw.admin(
        "PUT",
        "/safety/policies/no-pineapple",
        json={"rules": [{"name": "fruit", "detector": "deny_terms", "terms": ["pineapple"]}]},
    )
    assert put.status_code in (200, 201), put.text
    key = tenant_key(gw, "no-pineapple")
    with pytest.raises(openai.BadRequestError) as caught:
        ask(gw, key, "pineapple pizza?")
    assert caught.value.code == "content_policy_violation"


def test_blocks_are_audited_for_the_tenant(gw: Gateway) -> None:
    key = tenant_key(gw, "no-cards-in")
    with pytest.raises(openai.BadRequestError):
        ask(gw, key, f"charge {CARD}")
    entries = gw.admin("GET", "/audit", params={"action": "safety.block"}).json()["items"]
    assert any(
        entry["change"]["rule"] == "no-cards" and entry["change"]["direction"] == "input"
        for entry in entries
    ), "no safety.block audit entry: the engine's background task does not run"
