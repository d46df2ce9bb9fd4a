"""The JSON bodies vLLM sends for chat and text completions, whole and streamed.

Whole responses carry every field of vLLM's response models (pydantic's model_dump keeps
the nulls). Stream chunks are dumped by vLLM with exclude_unset, so they carry only what it
sets: no `usage` key on ordinary chunks unless continuous_usage_stats is asked for, and
`stop_reason` only on the chunk that finishes a choice (completions set it on every chunk).
The trailing usage chunk has `choices: []` and is dumped with exclude_none.
"""

from __future__ import annotations

import secrets
import time

from vllm_server.standin.jobs import Job


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def _full_usage(job: Job) -> dict[str, object]:
    return {**usage(job.prompt_tokens, job.completion_tokens), "prompt_tokens_details": None}


class ChatShapes:
    """chat.completion and chat.completion.chunk."""

    chunk_object = "chat.completion.chunk"

    def __init__(self, job: Job):
        self.head = {
            "id": f"chatcmpl-{secrets.token_hex(16)}",
            "object": self.chunk_object,
            "created": int(time.time()),
            "model": job.model,
        }

    def response(self, job: Job) -> dict[str, object]:
        choices = [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": answer.text,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "reasoning": None,
                },
                "logprobs": None,
                "finish_reason": answer.finish_reason,
                "stop_reason": None,
                "token_ids": None,
            }
            for index, answer in enumerate(job.answers)
        ]
        return {
            **self.head,
            "object": "chat.completion",
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": None,
            "usage": _full_usage(job),
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "kv_transfer_params": None,
        }

    def opening_choice(self, index: int) -> dict[str, object] | None:
        """The role-only delta vLLM sends before any token."""
        return {
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }

    def token_choice(self, index: int, piece: str, finish_reason: str | None) -> dict:
        choice: dict[str, object] = {
            "index": index,
            "delta": {"content": piece},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if finish_reason is not None:
            choice["stop_reason"] = None
        return choice


class CompletionShapes:
    """text_completion, whole and streamed."""

    chunk_object = "text_completion"

    def __init__(self, job: Job):
        self.head = {
            "id": f"cmpl-{secrets.token_hex(16)}",
            "object": self.chunk_object,
            "created": int(time.time()),
            "model": job.model,
        }

    def response(self, job: Job) -> dict[str, object]:
        choices = [
            {
                "index": index,
                "text": answer.text,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
                "stop_reason": None,
                "token_ids": None,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
            }
            for index, answer in enumerate(job.answers)
        ]
        return {
            **self.head,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": None,
            "usage": _full_usage(job),
            "kv_transfer_params": None,
        }

    def opening_choice(self, index: int) -> dict[str, object] | None:
        return None

    def token_choice(self, index: int, piece: str, finish_reason: str | None) -> dict:
        return {
            "index": index,
            "text": piece,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }


Shapes = ChatShapes | CompletionShapes
