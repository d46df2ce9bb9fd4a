"""Real vLLM's streams through the output guard: its token chunks take the byte-level path
(see gateway/safety/token_events.py), and the guard leaves clean text as vLLM wrote it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.safety.token_events import token_event
from tests.fixtures.real_vllm import RealVllm
from tests.gateway.safety.helpers import parse_events, rule, runtime, streamed_text

pytestmark = pytest.mark.vllm


def record(real_vllm: RealVllm, path: str, body: dict[str, Any]) -> list[bytes]:
    body = {
        "model": real_vllm.served_model_name,
        "max_tokens": 24,
        "temperature": 0,
        "stream": True,
        **body,
    }
    body["stream_options"] = {"include_usage": True}
    reply = httpx.post(real_vllm.url + path, json=body, timeout=60)
    reply.raise_for_status()
    return [event + b"\n\n" for event in reply.content.split(b"\n\n")[:-1]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story."}]}),
        ("/v1/completions", {"prompt": "Once upon a time"}),
    ],
)
def test_real_token_chunks_take_the_byte_path(
    real_vllm: RealVllm, path: str, body: dict[str, Any]
) -> None:
    events = record(real_vllm, path, body)
    recognised = [event for event in events if token_event(event, 0) is not None]
    # all but the role chunk (chat), the finishing chunk, the usage chunk and [DONE]
    assert len(recognised) >= len(events) - 4, events[:3]
    assert len(recognised) >= 10
    guard = runtime(
        rule("cards", "payment_card", "redact", "output"),
        rule("mails", "email", "redact", "output"),
    ).output_guard()
    assert guard is not None
    out = b"".join(guard.on_events(event) for event in events)
    assert streamed_text(parse_events(out)) == streamed_text(parse_events(b"".join(events)))
    assert out.endswith(b"data: [DONE]\n\n")
