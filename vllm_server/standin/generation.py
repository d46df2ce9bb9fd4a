"""POST /v1/chat/completions and /v1/completions: validate, roll the fault dice, then answer
whole or as a stream, with the configured latency and faults.

Timeline of one request: stall_ms (nothing sent at all), then for a stream the response
head, then waiting for a LoRA slot if the adapter has none, ttft_ms, the first token,
itl_ms before each further token. A whole response is sent when the last token is due.
With no latency configured and a slot free, a whole response is built inline: this is the
benchmark's "upstream direct" path and must cost well under a millisecond.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
from starlette.requests import Request
from starlette.responses import Response

from vllm_server.standin.config import Faults
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import bad_request, json_response, read_json_object
from vllm_server.standin.jobs import Job, chat_job, completion_job
from vllm_server.standin.shapes import ChatShapes, CompletionShapes, Shapes, usage
from vllm_server.standin.streaming import EventStream, EventWriter, unless_disconnected

_DONE = b"[DONE]"


async def _pause(milliseconds: float) -> None:
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


class GenerationRoutes:
    def __init__(self, engine: Engine):
        self._engine = engine

    async def chat(self, request: Request) -> Response | EventStream:
        job = chat_job(self._engine, await read_json_object(request))
        return await self._serve(request, job, ChatShapes(job))

    async def completions(self, request: Request) -> Response | EventStream:
        job = completion_job(self._engine, await read_json_object(request))
        return await self._serve(request, job, CompletionShapes(job))

    async def _serve(self, request: Request, job: Job, shapes: Shapes) -> Response | EventStream:
        engine = self._engine
        engine.maybe_fail()
        faults = replace(engine.faults)
        if job.stream:
            return EventStream(lambda writer: self._stream(job, shapes, faults, writer))
        delayed = faults.stall_ms or faults.ttft_ms or faults.itl_ms
        if not delayed and (job.adapter is None or engine.slots.can_start(job.adapter)):
            return await self._whole(job, shapes, faults)
        response = await unless_disconnected(self._whole(job, shapes, faults), request.receive)
        if response is None:  # nobody reads this; vLLM answers a gone client the same way
            return bad_request("Client disconnected").response()
        return response

    async def _whole(self, job: Job, shapes: Shapes, faults: Faults) -> Response:
        try:
            await _pause(faults.stall_ms)
            async with self._engine.generating(
                job.adapter, job.arrival, job.prompt_tokens, job.max_tokens
            ) as generation:
                await _pause(faults.ttft_ms)
                generation.emitted(1)
                await _pause(faults.itl_ms * (job.completion_tokens - 1))
                generation.emitted(job.completion_tokens - 1)
                generation.finish_reason = job.answers[-1].finish_reason
        except asyncio.CancelledError:
            self._engine.record_abort()
            raise
        return json_response(shapes.response(job))

    async def _stream(self, job: Job, shapes: Shapes, faults: Faults, out: EventWriter) -> bool:
        """Send the events; False when the stream was cut on purpose (cut_after_chunks)."""
        try:
            await _pause(faults.stall_ms)
            await out.start()
            async with self._engine.generating(
                job.adapter, job.arrival, job.prompt_tokens, job.max_tokens
            ) as generation:
                await _pause(faults.ttft_ms)
                sent = 0
                for index, answer in enumerate(job.answers):
                    opening = shapes.opening_choice(index)
                    if opening is not None:
                        await out.data(self._chunk(job, shapes, opening, sent))
                    last = len(answer.pieces) - 1
                    for position, piece in enumerate(answer.pieces):
                        if sent:
                            await _pause(faults.itl_ms)
                        finish_reason = answer.finish_reason if position == last else None
                        choice = shapes.token_choice(index, piece, finish_reason)
                        sent += 1
                        await out.data(self._chunk(job, shapes, choice, sent))
                        generation.emitted(1)
                        if sent == faults.cut_after_chunks:
                            generation.finish_reason = "error"
                            return False
                generation.finish_reason = job.answers[-1].finish_reason
                if job.include_usage:
                    await out.data(
                        orjson.dumps(
                            {
                                **shapes.head,
                                "choices": [],
                                "usage": usage(job.prompt_tokens, job.completion_tokens),
                            }
                        )
                    )
                await out.data(_DONE)
                return True
        except asyncio.CancelledError:
            self._engine.record_abort()
            raise

    @staticmethod
    def _chunk(job: Job, shapes: Shapes, choice: dict, completion_tokens: int) -> bytes:
        chunk: dict[str, object] = {**shapes.head, "choices": [choice]}
        if job.continuous_usage:
            chunk["usage"] = usage(job.prompt_tokens, completion_tokens)
        return orjson.dumps(chunk)
