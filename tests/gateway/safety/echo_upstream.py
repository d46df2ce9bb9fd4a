"""A tiny OpenAI-compatible upstream that answers with the caller's own last message.

The stand-in and the tiny model never repeat their prompt, so they cannot show what a safety
stage did to it on the way in, nor give it text to catch on the way out. This server can: it
answers chat and text completions with the last user message (or prompt) verbatim, whole or
streamed in 3-character pieces in vLLM's chunk shapes (so placeholders and terms arrive
split), keeps every request body it received for `GET /echo/requests`, and answers
`/v1/moderations` with `flagged` when the input says "attack".

Run: python -m tests.gateway.safety.echo_upstream --port PORT
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

PIECE_CHARS = 3
MODEL = "base"

received: list[dict[str, Any]] = []


def _echoed_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        content = users[-1]["content"] if users else ""
        if isinstance(content, list):
            return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(prompt)


def _usage(text: str) -> dict[str, int]:
    return {"prompt_tokens": 1, "completion_tokens": len(text), "total_tokens": 1 + len(text)}


def _chunk(chat: bool, piece: str | None, finish_reason: str | None) -> dict[str, Any]:
    if chat:
        delta = {"role": "assistant", "content": ""} if piece is None else {"content": piece}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
    else:
        choice = {"index": 0, "text": piece or "", "logprobs": None}
    choice["finish_reason"] = finish_reason
    if not chat or finish_reason is not None:
        choice["stop_reason"] = None
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": "echo-1", "object": kind, "created": 1, "model": MODEL, "choices": [choice]}


async def _events(chat: bool, text: str, usage: bool) -> AsyncIterator[bytes]:
    chunks = [_chunk(chat, None, None)] if chat else []
    chunks += [
        _chunk(chat, text[i : i + PIECE_CHARS], None) for i in range(0, len(text), PIECE_CHARS)
    ]
    chunks.append(_chunk(chat, "", "stop"))
    if usage:
        kind = "chat.completion.chunk" if chat else "text_completion"
        chunks.append(
            {
                "id": "echo-1",
                "object": kind,
                "created": 1,
                "model": MODEL,
                "choices": [],
                "usage": _usage(text),
            }
        )
    for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def completions(request: Request) -> Response:
    body = orjson.loads(await request.body())
    received.append(body)
    chat = request.url.path.endswith("/chat/completions")
    text = _echoed_text(body)
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_events(chat, text, usage), media_type="text/event-stream")
    if chat:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
    else:
        choice = {"index": 0, "text": text}
    choice.update(logprobs=None, finish_reason="stop", stop_reason=None)
    kind = "chat.completion" if chat else "text_completion"
    return JSONResponse(
        {
            "id": "echo-1",
            "object": kind,
            "created": 1,
            "model": MODEL,
            "choices": [choice],
            "usage": _usage(text),
        }
    )


async def moderations(request: Request) -> Response:
    body = orjson.loads(await request.body())
    received.append(body)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    results = [
        {"flagged": "attack" in text, "categories": {"violence": "attack" in text, "hate": False}}
        for text in inputs
    ]
    return JSONResponse({"id": "modr-1", "model": body.get("model", "m"), "results": results})


async def models(_: Request) -> Response:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": MODEL, "object": "model", "owned_by": "echo", "root": MODEL, "parent": None}
            ],
        }
    )


async def requests(_: Request) -> Response:
    return JSONResponse(received)


async def health(_: Request) -> Response:
    return Response(status_code=200)


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/v1/models", models),
        Route("/echo/requests", requests),
        Route("/health", health),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
