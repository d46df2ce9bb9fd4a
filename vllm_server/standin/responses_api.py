"""POST /v1/responses in vLLM's shapes: the response object, whole or as the typed event
stream vLLM sends for a plain text answer:

  response.created, response.in_progress, response.output_item.added,
  response.content_part.added, response.output_text.delta (one per token with text),
  response.output_text.done, response.content_part.done, response.output_item.done,
  response.completed

every event numbered by `sequence_number`. An answer cut at the token limit has status
"incomplete" with incomplete_details.reason "max_output_tokens" (the stream still ends with
response.completed). The response object echoes the request's settings with vLLM's
defaults; the stand-in runs no tools, so `tools` is [] and `tool_choice` "none", as vLLM
answers a request without tools.
"""

from __future__ import annotations

import secrets
import time

from vllm_server.standin.jobs import Job
from vllm_server.standin.streaming import typed_frame

# request field -> what vLLM echoes when the request leaves it out
_ECHOED = {
    "parallel_tool_calls": True,
    "background": False,
    "max_tool_calls": None,
    "previous_response_id": None,
    "prompt": None,
    "reasoning": None,
    "service_tier": "auto",
    "text": None,
    "top_logprobs": None,
    "truncation": "disabled",
    "user": None,
}
# sampling settings vLLM reports as floats, with its defaults
_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def _sampling(body: dict, name: str) -> float:
    value = body.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return _SAMPLING[name]


def _text_part(text: str, logprobs: list | None) -> dict[str, object]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs}


def usage(job: Job) -> dict[str, object]:
    return {
        "input_tokens": job.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "input_tokens_per_turn": [],
            "cached_tokens_per_turn": [],
        },
        "output_tokens": job.completion_tokens,
        "output_tokens_details": {
            "reasoning_tokens": 0,
            "tool_output_tokens": 0,
            "output_tokens_per_turn": [],
            "tool_output_tokens_per_turn": [],
        },
        "total_tokens": job.prompt_tokens + job.completion_tokens,
    }


class ResponsesShapes:
    def __init__(self, job: Job, body: dict):
        self._job = job
        self._body = body
        self._id = body.get("request_id") or f"resp_{secrets.token_hex(8)}"
        self._item_id = f"msg_{secrets.token_hex(8)}"
        self._created = int(time.time())
        self._sequence = 0

    def _object(self, status: str, output: list, usage: dict | None) -> dict[str, object]:
        body = self._body
        echoed = {name: body.get(name, default) for name, default in _ECHOED.items()}
        return {
            "id": self._id,
            "created_at": self._created,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "metadata": body.get("metadata"),
            "model": self._job.model,
            "object": "response",
            "output": output,
            "parallel_tool_calls": echoed["parallel_tool_calls"],
            "temperature": _sampling(body, "temperature"),
            "tool_choice": "none",
            "tools": [],
            "top_p": _sampling(body, "top_p"),
            "background": echoed["background"],
            "max_output_tokens": self._job.max_tokens,
            "max_tool_calls": echoed["max_tool_calls"],
            "previous_response_id": echoed["previous_response_id"],
            "prompt": echoed["prompt"],
            "reasoning": echoed["reasoning"],
            "service_tier": echoed["service_tier"],
            "status": status,
            "text": echoed["text"],
            "top_logprobs": echoed["top_logprobs"],
            "truncation": echoed["truncation"],
            "usage": usage,
            "user": echoed["user"],
            "presence_penalty": _sampling(body, "presence_penalty"),
            "frequency_penalty": _sampling(body, "frequency_penalty"),
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "input_messages": None,
            "output_messages": None,
        }

    def _item(self) -> dict[str, object]:
        return {
            "id": self._item_id,
            "content": [_text_part(self._job.answers[0].text, None)],
            "role": "assistant",
            "status": "completed",
            "type": "message",
            "phase": None,
        }

    def response(self) -> dict[str, object]:
        status = "incomplete" if self._job.answers[0].finish_reason == "length" else "completed"
        return self._object(status, [self._item()], usage(self._job))

    def _event(self, event_type: str, **fields: object) -> bytes:
        event = {**fields, "sequence_number": self._sequence, "type": event_type}
        self._sequence += 1
        return typed_frame(event)

    def _in_item(self, event_type: str, **fields: object) -> bytes:
        """An event about the text part of the one output item."""
        return self._event(
            event_type, content_index=0, item_id=self._item_id, output_index=0, **fields
        )

    def opening(self) -> list[bytes]:
        started = self._object("in_progress", [], None)
        item = {**self._item(), "content": [], "status": "in_progress"}
        return [
            self._event("response.created", response=started),
            self._event("response.in_progress", response=started),
            self._event("response.output_item.added", item=item, output_index=0),
            self._in_item("response.content_part.added", part=_text_part("", [])),
        ]

    def token(self, index: int, piece: str, finish_reason: str | None, tokens: int) -> bytes | None:
        if not piece:
            return None
        return self._in_item("response.output_text.delta", delta=piece, logprobs=[])

    def closing(self) -> list[bytes]:
        text = self._job.answers[0].text
        return [
            self._in_item("response.output_text.done", logprobs=[], text=text),
            self._in_item("response.content_part.done", part=_text_part(text, None)),
            self._event("response.output_item.done", item=self._item(), output_index=0),
            self._event("response.completed", response=self.response()),
        ]
