"""Requests whose answers the stand-in must shape as real vLLM 0.32 shapes them, how an
answer is captured, and how it is reduced to its shape for comparing.

A shape keeps an answer's status, content type, keys and JSON types, recursively (a list:
the distinct shapes of its items); a typed event stream (`event: <type>`) keeps its event
sequence, a run of one type with one shape counting once (`response.output_text.delta...`);
an OpenAI `data:` stream keeps the distinct shapes of its chunks, the choice indices it
streamed and its last frame. Text, ids, numbers and how many tokens came are not shape: a
tiny random model and the stand-in's word answers differ in all of them.

Real vLLM's answers to CASES are saved in data/<case>.json. To capture them again (after
a vLLM upgrade), serve the tiny model and its adapters, then run this module against it:

    .venv/bin/vllm-server up --demo --port 8011 &
    .venv/bin/python -m tests.vllm_server.vllm_shapes http://127.0.0.1:8011
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.vllm_server.helpers import HELLO

DATA = Path(__file__).parent / "data"
# Below the stand-in's shortest natural answer (8 tokens), so every answer is cut at its
# limit. Greedy (temperature 0) or seeded, real vLLM's answers are the same every capture;
# vLLM refuses n > 1 with greedy sampling.
LIMIT = 6


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: dict[str, Any] | None = None  # None: a GET


CASES = (
    Case("responses", "/v1/responses",
         {"model": "base", "input": "tell me about rivers", "max_output_tokens": LIMIT,
          "temperature": 0}),
    Case("responses_stream", "/v1/responses",
         {"model": "tenant-a", "input": "tell me about rivers", "max_output_tokens": LIMIT,
          "temperature": 0, "stream": True}),
    Case("responses_items", "/v1/responses",
         {"model": "tenant-b", "instructions": "be brief", "metadata": {"case": "items"},
          "input": [
              {"role": "user", "content": "tell me about rivers"},
              {"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "rivers flow"}]},
              {"role": "user", "content": [{"type": "input_text", "text": "more"}]},
          ],
          "max_output_tokens": LIMIT, "temperature": 0}),
    Case("responses_retrieve", "/v1/responses/resp_0123456789abcdef"),
    Case("responses_unknown_model", "/v1/responses", {"model": "nope", "input": "hi"}),
    Case("responses_too_many_tokens", "/v1/responses",
         {"model": "base", "input": "hi", "max_output_tokens": 600}),
    Case("messages", "/v1/messages",
         {"model": "base", "max_tokens": LIMIT, "messages": HELLO, "temperature": 0}),
    Case("messages_stream", "/v1/messages",
         {"model": "tenant-a", "max_tokens": LIMIT, "system": "be brief", "temperature": 0,
          "messages": [{"role": "user",
                        "content": [{"type": "text", "text": "tell me about rivers"}]}],
          "stream": True}),
    Case("messages_unknown_model", "/v1/messages",
         {"model": "nope", "max_tokens": LIMIT, "messages": HELLO}),
    Case("messages_without_max_tokens", "/v1/messages", {"model": "base", "messages": HELLO}),
    Case("count_tokens", "/v1/messages/count_tokens",
         {"model": "tenant-b", "system": "be brief", "messages": HELLO}),
    Case("count_tokens_unknown_model", "/v1/messages/count_tokens",
         {"model": "nope", "messages": HELLO}),
    Case("tokenize_prompt", "/tokenize",
         {"model": "base", "prompt": "tell me about rivers", "return_token_strs": True}),
    Case("tokenize_messages", "/tokenize", {"model": "tenant-a", "messages": HELLO}),
    Case("tokenize_unknown_model", "/tokenize", {"model": "nope", "prompt": "hi"}),
    Case("detokenize", "/detokenize", {"model": "base", "tokens": [1, 300, 400]}),
    Case("chat_stream", "/v1/chat/completions",
         {"model": "tenant-b", "messages": HELLO, "max_tokens": LIMIT, "temperature": 0,
          "stream": True}),
    Case("chat_stream_usage", "/v1/chat/completions",
         {"model": "base", "messages": HELLO, "max_tokens": LIMIT, "temperature": 0,
          "stream": True,
          "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    Case("chat_n2", "/v1/chat/completions",
         {"model": "base", "messages": HELLO, "max_tokens": LIMIT, "n": 2, "seed": 1}),
    Case("chat_n2_stream", "/v1/chat/completions",
         {"model": "base", "messages": HELLO, "max_tokens": LIMIT, "n": 2, "seed": 1,
          "stream": True, "stream_options": {"include_usage": True}}),
    Case("chat_n2_greedy", "/v1/chat/completions",
         {"model": "base", "messages": HELLO, "n": 2, "temperature": 0}),
    Case("completions_n2", "/v1/completions",
         {"model": "tenant-a", "prompt": ["once upon a time", "the river"],
          "max_tokens": LIMIT, "n": 2, "seed": 1}),
    Case("completions_n2_stream", "/v1/completions",
         {"model": "tenant-a", "prompt": ["once upon a time", "the river"],
          "max_tokens": LIMIT, "n": 2, "seed": 1, "stream": True}),
    Case("completions_stream_usage", "/v1/completions",
         {"model": "tenant-b", "prompt": "once upon a time", "max_tokens": LIMIT,
          "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}),
    Case("chat_unknown_model", "/v1/chat/completions", {"model": "nope", "messages": HELLO}),
)  # fmt: skip


def _events(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Server-sent events as {"event": type or None, "data": JSON or "[DONE]"}."""
    events: list[dict[str, Any]] = []
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append({"event": name, "data": data if data == "[DONE]" else json.loads(data)})
            name = None
    return events


def capture(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer of the server at `url` to POST `body` (GET without one), as saved under
    data/: its status, content type, and JSON body or server-sent events."""
    method = "GET" if body is None else "POST"
    with (
        httpx.Client(base_url=url, timeout=60.0) as client,
        client.stream(method, path, json=body) as response,
    ):
        response.read()
    captured: dict[str, Any] = {
        "request": {"method": method, "path": path, "body": body},
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
    }
    if captured["content_type"].startswith("text/event-stream"):
        captured["events"] = _events(response.text.splitlines())
    else:
        captured["body"] = response.json()
    return captured


def saved(case: Case) -> dict[str, Any]:
    return json.loads((DATA / f"{case.name}.json").read_text())


def skeleton(value: object) -> object:
    """Keys and JSON types, recursively; a list holds the distinct shapes of its items."""
    if isinstance(value, dict):
        return {key: skeleton(item) for key, item in value.items()}
    if isinstance(value, list):
        items = {json.dumps(skeleton(item), sort_keys=True) for item in value}
        return [json.loads(item) for item in sorted(items)]
    return {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
    }[type(value)]


def _typed_events(events: list[dict[str, Any]]) -> list[list[object]]:
    sequence: list[list[object]] = []
    for event in events:
        step = [event["event"], skeleton(event["data"])]
        if not sequence or sequence[-1] != step:
            sequence.append(step)
    return sequence


def _chunks(events: list[dict[str, Any]]) -> dict[str, object]:
    chunks = [event["data"] for event in events if event["data"] != "[DONE]"]
    indices = {choice["index"] for chunk in chunks for choice in chunk["choices"]}
    return {
        "chunks": skeleton(chunks),
        "choice_indices": sorted(indices),
        "last": events[-1]["data"] if events[-1]["data"] == "[DONE]" else "a chunk",
    }


def shape(captured: dict[str, Any]) -> dict[str, object]:
    result: dict[str, object] = {
        "status": captured["status"],
        "content_type": captured["content_type"],
    }
    if "body" in captured:
        result["body"] = skeleton(captured["body"])
    elif any(event["event"] for event in captured["events"]):
        result["events"] = _typed_events(captured["events"])
    else:
        result.update(_chunks(captured["events"]))
    return result


def differences(expected: object, actual: object, path: str = "") -> list[str]:
    """Where two shapes part, one line each: `path: expected != actual`."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in [*expected, *(key for key in actual if key not in expected)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                lines.append(f"{where}: missing (expected {json.dumps(expected[key])})")
            elif key not in expected:
                lines.append(f"{where}: unexpected {json.dumps(actual[key])}")
            else:
                lines += differences(expected[key], actual[key], where)
        return lines
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            line
            for index, (left, right) in enumerate(zip(expected, actual, strict=True))
            for line in differences(left, right, f"{path}[{index}]")
        ]
    if expected != actual:
        return [f"{path}: {json.dumps(expected)} != {json.dumps(actual)}"]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Capture real vLLM's answers to CASES into data/: `python -m ... URL`."""
    (url,) = sys.argv[1:] if argv is None else argv
    DATA.mkdir(exist_ok=True)
    for case in CASES:
        captured = capture(url, case.path, case.body)
        text = json.dumps(captured, indent=2, ensure_ascii=False)
        (DATA / f"{case.name}.json").write_text(text + "\n")
        print(f"{case.name}: {captured['status']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
