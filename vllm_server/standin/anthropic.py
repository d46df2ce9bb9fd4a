"""POST /v1/messages in the shapes vLLM gives an Anthropic Messages answer: whole, or as the
typed stream message_start, content_block_start, content_block_delta (text_delta, one per
token with text), content_block_stop, message_delta (stop_reason, usage), message_stop.

vLLM runs these as chat completions, so the message id is the chat completion's
("chatcmpl-..."), a finish_reason "length" is stop_reason "max_tokens" and a natural end
"end_turn". The whole answer leaves out its null fields (stop_sequence); the stream's
message_start and message_delta keep stop_sequence: null.
"""

from __future__ import annotations

import secrets

from vllm_server.standin.jobs import Job
from vllm_server.standin.streaming import typed_frame


class MessagesShapes:
    def __init__(self, job: Job):
        self._job = job
        self._id = f"chatcmpl-{secrets.token_hex(8)}"

    def _stop_reason(self) -> str:
        return "max_tokens" if self._job.answers[0].finish_reason == "length" else "end_turn"

    def _usage(self, output_tokens: int) -> dict[str, int]:
        return {"input_tokens": self._job.prompt_tokens, "output_tokens": output_tokens}

    def response(self) -> dict[str, object]:
        job = self._job
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": job.answers[0].text}],
            "model": job.model,
            "stop_reason": self._stop_reason(),
            "usage": self._usage(job.completion_tokens),
        }

    def opening(self) -> list[bytes]:
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self._job.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(0),
        }
        return [
            typed_frame({"type": "message_start", "message": message}),
            typed_frame(
                {
                    "type": "content_block_start",
                    "content_block": {"type": "text", "text": ""},
                    "index": 0,
                }
            ),
        ]

    def token(self, index: int, piece: str, finish_reason: str | None, tokens: int) -> bytes | None:
        if not piece:
            return None
        return typed_frame(
            {
                "type": "content_block_delta",
                "delta": {"type": "text_delta", "text": piece},
                "index": 0,
            }
        )

    def closing(self) -> list[bytes]:
        return [
            typed_frame({"type": "content_block_stop", "index": 0}),
            typed_frame(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason(), "stop_sequence": None},
                    "usage": self._usage(self._job.completion_tokens),
                }
            ),
            typed_frame({"type": "message_stop"}),
        ]
