"""The JSON bodies vLLM sends for chat and text completions, whole and streamed, and the
Surface every generation route answers through.

Whole responses carry every field of vLLM's response models (pydantic's model_dump keeps
the nulls). Stream chunks are dumped by vLLM with exclude_unset, so they carry only what it
sets: the role chunk opening each chat choice carries `prompt_token_ids` / `prompt_text`;
no `usage` key on ordinary chunks unless continuous_usage_stats is asked for; `stop_reason`
only on the chunk that finishes a chat choice (completions set it on every chunk); the
chunk that finishes a choice carries `system_fingerprint`, unless a usage chunk follows,
which then carries it instead. The trailing usage chunk has `choices: []`.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

import orjson

from vllm_server.standin.jobs import Job
from vllm_server.standin.streaming import data_frame

_DONE = data_frame(b"[DONE]")


class Surface(Protocol):
    """One API's answer to a job: whole, or as the frames of a stream. A stream is the
    opening frames, a frame per token (or none: vLLM sends no frame for a token whose text
    is empty), then the closing frames."""

    def response(self) -> dict[str, object]: ...

    def opening(self) -> list[bytes]: ...

    def token(self, index: int, piece: str, finish_reason: str | None, tokens: int) -> bytes | None:
        """The frame for choice `index`'s next piece; `tokens`: that choice's count so far."""

    def closing(self) -> list[bytes]: ...


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def _full_usage(job: Job) -> dict[str, object]:
    return {
        **usage(job.prompt_tokens, job.completion_tokens),
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


class _OpenAIShapes:
    """What chat and text completions share: the chunk head, fingerprints, usage."""

    id_prefix: str
    chunk_object: str

    def __init__(self, job: Job, fingerprint: str):
        self._job = job
        self._fingerprint = fingerprint
        self.head = {
            "id": f"{self.id_prefix}{secrets.token_hex(8)}",
            "object": self.chunk_object,
            "created": int(time.time()),
            "model": job.model,
        }
        self._finishing = {} if job.include_usage else {"system_fingerprint": fingerprint}

    def closing(self) -> list[bytes]:
        job = self._job
        if not job.include_usage:
            return [_DONE]
        last = {
            **self.head,
            "choices": [],
            "usage": usage(job.prompt_tokens, job.completion_tokens),
            "system_fingerprint": self._fingerprint,
        }
        return [data_frame(orjson.dumps(last)), _DONE]


class ChatShapes(_OpenAIShapes):
    """chat.completion and chat.completion.chunk."""

    id_prefix = "chatcmpl-"
    chunk_object = "chat.completion.chunk"

    def response(self) -> dict[str, object]:
        job = self._job
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
                "routed_experts": None,
            }
            for index, answer in enumerate(job.answers)
        ]
        return {
            **self.head,
            "object": "chat.completion",
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": self._fingerprint,
            "usage": _full_usage(job),
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "prompt_text": None,
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }

    def _usage(self, completion_tokens: int) -> dict[str, object]:
        return {
            **usage(self._job.prompt_tokens, completion_tokens),
            "completion_tokens_details": None,
        }

    def opening(self) -> list[bytes]:
        """The role-only delta vLLM sends for every choice before any token."""
        frames = []
        for index in range(len(self._job.answers)):
            chunk: dict[str, object] = {
                **self.head,
                "choices": [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
            if self._job.continuous_usage:
                chunk["usage"] = self._usage(0)
            chunk["prompt_token_ids"] = chunk["prompt_text"] = None
            frames.append(data_frame(orjson.dumps(chunk)))
        return frames

    def token(self, index: int, piece: str, finish_reason: str | None, tokens: int) -> bytes:
        if finish_reason is None:
            chunk: dict[str, object] = {
                **self.head,
                "choices": [
                    {
                        "index": index,
                        "delta": {"content": piece},
                        "logprobs": None,
                        "finish_reason": None,
                        "token_ids": None,
                    }
                ],
            }
        else:
            chunk = {
                **self.head,
                "choices": [
                    {
                        "index": index,
                        "delta": {"content": piece},
                        "logprobs": None,
                        "finish_reason": finish_reason,
                        "stop_reason": None,
                        "token_ids": None,
                    }
                ],
                **self._finishing,
            }
        if self._job.continuous_usage:
            chunk["usage"] = self._usage(tokens)
        return data_frame(orjson.dumps(chunk))


class CompletionShapes(_OpenAIShapes):
    """text_completion, whole and streamed."""

    id_prefix = "cmpl-"
    chunk_object = "text_completion"

    def response(self) -> dict[str, object]:
        job = self._job
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
                "routed_experts": None,
            }
            for index, answer in enumerate(job.answers)
        ]
        return {
            **self.head,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": self._fingerprint,
            "usage": _full_usage(job),
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }

    def opening(self) -> list[bytes]:
        return []

    def token(self, index: int, piece: str, finish_reason: str | None, tokens: int) -> bytes:
        chunk: dict[str, object] = {
            **self.head,
            "choices": [
                {
                    "index": index,
                    "text": piece,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "stop_reason": None,
                    "prompt_token_ids": None,
                    "token_ids": None,
                }
            ],
        }
        if finish_reason is not None:
            chunk.update(self._finishing)
        if self._job.continuous_usage:
            chunk["usage"] = usage(self._job.prompt_tokens, tokens)
        return data_frame(orjson.dumps(chunk))
