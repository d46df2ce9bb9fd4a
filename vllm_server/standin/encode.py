"""POST /v1/embeddings, /tokenize, /detokenize and /v1/messages/count_tokens, in vLLM's
shapes, from the deterministic text rules in `text` (so /tokenize's count and
count_tokens' input_tokens equal the prompt tokens a generation reports)."""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from vllm_server.standin import text
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import json_response, missing_field, read_json_object, wrong_type
from vllm_server.standin.jobs import anthropic_messages, chat_messages, prompt_too_long


def _embedding_inputs(value: object) -> list[str | list[int]]:
    """A string, token ids, or a list of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        return [value]
    if isinstance(value, list) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, int) for t in v))
        for v in value
    ):
        return list(value)
    raise wrong_type("input", "string", value)


class EncodeRoutes:
    def __init__(self, engine: Engine):
        self._engine = engine

    async def embeddings(self, request: Request) -> Response:
        body = await read_json_object(request)
        engine = self._engine
        model, _adapter = engine.resolve_model(body.get("model"))
        if "input" not in body:
            raise missing_field("input", body)
        inputs = _embedding_inputs(body["input"])
        engine.maybe_fail()
        keys = [item if isinstance(item, str) else repr(item) for item in inputs]
        data = [
            {
                "index": index,
                "object": "embedding",
                "embedding": text.embedding(engine.config.seed, model, key),
            }
            for index, key in enumerate(keys)
        ]
        prompt_tokens = sum(text.completion_prompt_tokens(item) for item in inputs)
        return json_response(
            {
                "id": f"embd-{secrets.token_hex(16)}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": data,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }
        )

    async def tokenize(self, request: Request) -> Response:
        """`prompt` or chat `messages` -> their token ids, and their pieces when
        `return_token_strs` is true."""
        body = await read_json_object(request)
        self._engine.resolve_model(body.get("model"))
        if "messages" in body:
            pieces = text.chat_prompt_pieces(chat_messages(body))
        elif "prompt" in body:
            prompt = body["prompt"]
            if not isinstance(prompt, str):
                raise wrong_type("prompt", "string", prompt)
            add_special_tokens = body.get("add_special_tokens", True) is not False
            pieces = text.completion_prompt_pieces(prompt, add_special_tokens)
        else:
            raise missing_field("prompt", body)
        return json_response(
            {
                "count": len(pieces),
                "max_model_len": self._engine.config.max_model_len,
                "tokens": [text.piece_id(piece) for piece in pieces],
                "token_strs": pieces if body.get("return_token_strs") is True else None,
            }
        )

    async def detokenize(self, request: Request) -> Response:
        body = await read_json_object(request)
        self._engine.resolve_model(body.get("model"))
        if "tokens" not in body:
            raise missing_field("tokens", body)
        tokens = body["tokens"]
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise wrong_type("tokens", "list", tokens)
        return json_response({"prompt": text.detokenize(tokens)})

    async def count_tokens(self, request: Request) -> Response:
        """Anthropic's POST /v1/messages/count_tokens: the prompt size /v1/messages reports."""
        body = await read_json_object(request)
        self._engine.resolve_model(body.get("model"))
        input_tokens = text.chat_prompt_tokens(anthropic_messages(body))
        max_model_len = self._engine.config.max_model_len
        if input_tokens > max_model_len:
            raise prompt_too_long(input_tokens, max_model_len)
        return json_response(
            {
                "input_tokens": input_tokens,
                "context_management": {"original_input_tokens": input_tokens},
            }
        )
