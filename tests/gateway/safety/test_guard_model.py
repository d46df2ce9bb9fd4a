"""The guard model over real HTTP: a chat model's verdict (the stand-in, and real vLLM with the
tiny model as the guard), a moderations endpoint, timeouts, and fail-open / fail-closed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.core.errors import GatewayError
from gateway.safety.events import SafetyEvents
from gateway.safety.guard_model import GuardModel, GuardSessions
from gateway.safety.policy import GuardSpec, PolicySpec
from gateway.safety.runtime import CompiledPolicy, PolicyRuntime
from tests.fixtures.processes import ServerProcess, free_port
from tests.fixtures.real_vllm import RealVllm
from tests.fixtures.standin import set_faults
from tests.gateway.safety.conftest import echoed_requests
from tests.gateway.safety.helpers import Prompt, chat_prompt
from tests.gateway.safety.runaway import BACKTRACKING, Runaway, within_hang_limit

TEMPLATE = "Classify this message as safe or unsafe:\n{text}"
NEVER = r"^\x00$"  # no answer matches: the verdict is always "safe"


@pytest_asyncio.fixture(loop_scope="function")
async def sessions() -> AsyncIterator[GuardSessions]:
    guard_sessions = GuardSessions()
    yield guard_sessions
    await guard_sessions.close()


def guarded(
    sessions: GuardSessions, url: str, events: SafetyEvents | None = None, **guard: Any
) -> PolicyRuntime:
    spec = GuardSpec.model_validate({"model": "base", "prompt_template": TEMPLATE, **guard})
    policy = CompiledPolicy(
        "guarded", PolicySpec(guard=spec), GuardModel(spec, sessions, url, None)
    )
    return PolicyRuntime(policy, "tenant-1", "key-1", events or SafetyEvents(10))


def chat(text: str) -> Prompt:
    return chat_prompt(("user", text))


async def test_a_chat_guard_maps_its_answer_through_the_verdict_regex(
    standin: ServerProcess, sessions: GuardSessions
) -> None:
    # The stand-in answers words from its vocabulary, never "unsafe": the default pattern says safe.
    assert await guarded(sessions, standin.url).check_input(chat("hello")) is False
    # Any word at all counts as unsafe under this pattern: blocked, naming the rule.
    events = SafetyEvents(10)
    with pytest.raises(GatewayError) as caught:
        await guarded(
            sessions, standin.url, events, unsafe_pattern=r"\w", name="llm-guard"
        ).check_input(chat("hello"))
    assert (caught.value.status, caught.value.code) == (400, "content_policy_violation")
    assert "llm-guard" in caught.value.message and "hello" not in caught.value.message
    assert events.counts == {
        ("tenant-1", "guarded", "llm-guard", "guard_model", "input", "block"): 1
    }


async def test_a_flagging_guard_lets_the_request_through(
    standin: ServerProcess, sessions: GuardSessions
) -> None:
    events = SafetyEvents(10)
    runtime = guarded(sessions, standin.url, events, unsafe_pattern=r"\w", action="flag")
    assert await runtime.check_input(chat("hello")) is False
    assert list(events.counts) == [
        ("tenant-1", "guarded", "guard_model", "guard_model", "input", "flag")
    ]


async def test_a_slow_guard_fails_closed_or_open_as_configured(
    standin: ServerProcess, sessions: GuardSessions
) -> None:
    set_faults(standin, ttft_ms=2000)
    with pytest.raises(GatewayError) as caught:
        await guarded(sessions, standin.url, timeout_s=0.3).check_input(chat("hello"))
    assert (caught.value.status, caught.value.code) == (503, "safety_check_unavailable")
    assert "0.3s" in caught.value.message
    events = SafetyEvents(10)
    assert (
        await guarded(sessions, standin.url, events, timeout_s=0.3, fail_open=True).check_input(
            chat("hello")
        )
        is False
    )
    assert list(events.counts) == [
        ("tenant-1", "guarded", "guard_model", "guard_model", "input", "unavailable")
    ]


async def test_an_unreachable_guard_fails_closed(sessions: GuardSessions) -> None:
    with pytest.raises(GatewayError) as caught:
        await guarded(sessions, f"http://127.0.0.1:{free_port()}").check_input(chat("hello"))
    assert caught.value.status == 503


async def test_a_moderations_endpoint(
    echo_upstream: ServerProcess, sessions: GuardSessions
) -> None:
    runtime = guarded(sessions, echo_upstream.url, kind="moderations")
    assert await runtime.check_input(chat("a friendly note")) is False
    with pytest.raises(GatewayError) as caught:
        await guarded(sessions, echo_upstream.url, kind="moderations").check_input(
            chat("plan the attack")
        )
    assert "guard_model: violence" in caught.value.message
    assert echoed_requests(echo_upstream)[-1] == {"model": "base", "input": "plan the attack"}


async def test_the_guard_sees_the_input_after_masking(
    echo_upstream: ServerProcess, sessions: GuardSessions
) -> None:
    spec = PolicySpec.model_validate(
        {
            "rules": [{"name": "m", "detector": "email", "direction": "input", "action": "mask"}],
            "guard": {"kind": "moderations", "model": "mod"},
        }
    )
    policy = CompiledPolicy("p", spec, GuardModel(spec.guard, sessions, echo_upstream.url, None))
    runtime = PolicyRuntime(policy, None, None, SafetyEvents(10))
    assert await runtime.check_input(chat("mail ann@example.com")) is True
    assert echoed_requests(echo_upstream)[-1]["input"] == "mail [EMAIL_1]"


@pytest.mark.vllm
async def test_the_tiny_model_as_the_guard_on_real_vllm(
    real_vllm: RealVllm, sessions: GuardSessions
) -> None:
    """The tiny model's answer is random but fixed under greedy decoding: ask it directly
    first, then check that the verdict follows the configured regex for that very answer."""
    guard_prompt = TEMPLATE.replace("{text}", "hello there")
    direct = httpx.post(
        real_vllm.url + "/v1/chat/completions",
        json={
            "model": real_vllm.served_model_name,
            "messages": [{"role": "user", "content": guard_prompt}],
            "temperature": 0,
            "max_tokens": 8,
        },
        timeout=60,
    )
    direct.raise_for_status()
    answer = direct.json()["choices"][0]["message"]["content"]
    assert answer.strip(), "the tiny model answered nothing; pick another prompt"
    matching = re.escape(answer.strip()[:4])
    for _ in range(2):  # the same verdict every time
        with pytest.raises(GatewayError) as caught:
            await guarded(
                sessions,
                real_vllm.url,
                model=real_vllm.served_model_name,
                unsafe_pattern=matching,
                timeout_s=30,
            ).check_input(chat("hello there"))
        assert caught.value.code == "content_policy_violation"
    allowed = guarded(
        sessions,
        real_vllm.url,
        model=real_vllm.served_model_name,
        unsafe_pattern=NEVER,
        timeout_s=30,
    )
    assert await allowed.check_input(chat("hello there")) is False


@pytest.mark.parametrize("case", BACKTRACKING)
def test_a_verdict_regex_that_backtracks_judges_a_long_answer(
    echo_upstream: ServerProcess, case: Runaway
) -> None:
    """The echo upstream answers with the guard's prompt: here, the text as it is."""

    async def verdicts() -> list[str | None]:
        sessions = GuardSessions()
        runtime = guarded(
            sessions, echo_upstream.url, unsafe_pattern=case.pattern, prompt_template="{text}"
        )
        codes: list[str | None] = []
        try:
            for text, _ in case.texts:
                try:
                    await runtime.check_input(chat(text))
                    codes.append(None)
                except GatewayError as error:
                    codes.append(error.code)
        finally:
            await sessions.close()
        return codes

    expected = [None if match is None else "content_policy_violation" for _, match in case.texts]
    assert within_hang_limit(lambda: asyncio.run(verdicts())) == expected
