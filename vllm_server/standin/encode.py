"""POST /v1/embeddings and POST /tokenize, in vLLM's shapes, from the deterministic text
rules in `text` (so /tokenize's count equals the prompt_tokens a generation reports)."""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from vllm_server.standin import text
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import json_response, missing_field, read_json_object, wrong_type


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
        body = await read_json_object(request)
        self._engine.resolve_model(body.get("model"))
        if "messages" in body:
            messages = body["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise wrong_type("messages", "list", messages)
            tokens = text.chat_prompt_ids(messages)
        elif "prompt" in body:
            prompt = body["prompt"]
            if not isinstance(prompt, str):
                raise wrong_type("prompt", "string", prompt)
            tokens = text.completion_prompt_ids(prompt)
        else:
            raise missing_field("prompt", body)
        return json_response(
            {
                "count": len(tokens),
                "max_model_len": self._engine.config.max_model_len,
                "tokens": tokens,
                "token_strs": None,
            }
        )
