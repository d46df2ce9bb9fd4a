"""Build compiled policies and vLLM-shaped SSE streams for the safety unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.core.request import RequestTexts
from gateway.safety.events import SafetyEvents
from gateway.safety.policy import PolicySpec
from gateway.safety.runtime import CompiledPolicy, PolicyRuntime
from gateway.surfaces import ChatCompletions, Surface

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Prompt(RequestTexts):
    """A request's texts as its surface reads them, with the body they live in."""

    body: dict[str, Any] = field(default_factory=dict)


def prompt(surface: Surface, body: dict[str, Any]) -> Prompt:
    """The texts of `body` (a request to `surface`), ready for `PolicyRuntime.check_input`."""
    request = surface.parse(orjson.dumps(body))
    texts = surface.texts(request)
    return Prompt(texts.param, texts.slots, texts.messages, texts.unreadable, request.body)


def chat_prompt(*messages: tuple[str, Any]) -> Prompt:
    return prompt(
        ChatCompletions(),
        {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages]},
    )


def runtime(*rules: dict[str, Any], events: SafetyEvents | None = None) -> PolicyRuntime:
    """A request's runtime under a policy of `rules` (no guard model)."""
    spec = PolicySpec.model_validate({"rules": list(rules)})
    return PolicyRuntime(
        CompiledPolicy("test-policy", spec, None), "tenant-1", "key-1", events or SafetyEvents(100)
    )


def rule(
    name: str, detector: str, action: str = "block", direction: str = "both", **extra: Any
) -> dict[str, Any]:
    return {"name": name, "detector": detector, "action": action, "direction": direction, **extra}


def chat_event(
    text: str | None, finish_reason: str | None = None, index: int = 0, role: bool = False
) -> bytes:
    """A chat chunk as vLLM streams it (exclude_unset: stop_reason only on the last one)."""
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
    if text is not None:
        delta["content"] = text
    choice: dict[str, Any] = {
        "index": index,
        "delta": delta,
        "logprobs": None,
        "finish_reason": finish_reason,
    }
    if finish_reason is not None:
        choice["stop_reason"] = None
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def completion_event(text: str, finish_reason: str | None = None, index: int = 0) -> bytes:
    choice = {
        "index": index,
        "text": text,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": None,
    }
    chunk = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def usage_event() -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def chat_stream(pieces: list[str]) -> list[bytes]:
    """The events of a whole chat answer: role chunk, one chunk per piece, finish, usage, DONE."""
    return [
        chat_event(None, role=True),
        *(chat_event(piece) for piece in pieces),
        chat_event("", "stop"),
        usage_event(),
        DONE,
    ]


def parse_events(data: bytes) -> list[dict[str, Any] | str]:
    """The events of an SSE body: parsed chunks, or "[DONE]"; fails on broken framing."""
    assert data.endswith(b"\n\n") or not data, data
    events: list[dict[str, Any] | str] = []
    for event in data.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        payload = event[6:]
        events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events


def streamed_text(events: list[dict[str, Any] | str], index: int = 0) -> str:
    text = ""
    for event in events:
        if isinstance(event, str):
            continue
        for choice in event["choices"]:
            if choice["index"] != index:
                continue
            holder = choice.get("delta", choice)
            text += holder.get("content") or holder.get("text") or ""
    return text


def finish_reasons(events: list[dict[str, Any] | str]) -> list[str]:
    return [
        choice["finish_reason"]
        for event in events
        if not isinstance(event, str)
        for choice in event["choices"]
        if choice.get("finish_reason")
    ]
