"""The generation routes (/v1/chat/completions, /v1/completions, /v1/responses, /v1/messages,
/v1/audio/transcriptions and /translations):
validate, roll the fault dice, then answer whole or as a stream, with the configured
latency and faults; each route's shapes come from its Surface.

Timeline of one request: stall_ms (nothing sent at all), then for a stream the response
head, then waiting for a LoRA slot if the adapter has none, ttft_ms, the first token,
itl_ms before each further decoding step. The choices of a request (n, or the prompts of
a completions batch) decode side by side, one token each per step, as in vLLM's batches.
A whole response is sent when the last token is due. With no latency configured and a
slot free, a whole response is built inline: this is the benchmark's "upstream direct"
path and must cost well under a millisecond.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from vllm_server.standin.anthropic import MessagesShapes
from vllm_server.standin.audio import SpeechToTextShapes, audio_job
from vllm_server.standin.config import Faults
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import VLLMError, bad_request, json_response, read_json_object
from vllm_server.standin.jobs import Job, chat_job, completion_job, messages_job, responses_job
from vllm_server.standin.responses_api import ResponsesShapes
from vllm_server.standin.shapes import ChatShapes, CompletionShapes, Surface
from vllm_server.standin.streaming import EventStream, EventWriter, unless_disconnected


async def _pause(milliseconds: float) -> None:
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


class GenerationRoutes:
    def __init__(self, engine: Engine):
        self._engine = engine

    async def chat(self, request: Request) -> Response | EventStream:
        job = chat_job(self._engine, await read_json_object(request))
        return await self._serve(request, job, ChatShapes(job, self._engine.fingerprint))

    async def completions(self, request: Request) -> Response | EventStream:
        job = completion_job(self._engine, await read_json_object(request))
        return await self._serve(request, job, CompletionShapes(job, self._engine.fingerprint))

    async def responses(self, request: Request) -> Response | EventStream:
        body = await read_json_object(request)
        job = responses_job(self._engine, body)
        return await self._serve(request, job, ResponsesShapes(job, body))

    async def messages(self, request: Request) -> Response | EventStream:
        job = messages_job(self._engine, await read_json_object(request))
        return await self._serve(request, job, MessagesShapes(job))

    async def transcriptions(self, request: Request) -> Response | EventStream:
        return await self._speech_to_text(request, "transcribe")

    async def translations(self, request: Request) -> Response | EventStream:
        return await self._speech_to_text(request, "translate")

    async def _speech_to_text(self, request: Request, task: str) -> Response | EventStream:
        async with request.form() as form:
            job, seconds = audio_job(self._engine, form, task)
        return await self._serve(request, job, SpeechToTextShapes(job, task, seconds))

    async def retrieve_response(self, request: Request) -> Response:
        """vLLM keeps no responses unless VLLM_ENABLE_RESPONSES_API_STORE=1 (off by
        default), so it finds none, `store: true` or not; nor does the stand-in."""
        response_id = request.path_params["response_id"]
        raise VLLMError(
            404,
            "invalid_request_error",
            f"Response with id '{response_id}' not found.",
            "response_id",
        )

    async def _serve(self, request: Request, job: Job, surface: Surface) -> Response | EventStream:
        engine = self._engine
        engine.maybe_fail()
        faults = replace(engine.faults)
        if job.stream:
            return EventStream(lambda writer: self._stream(job, surface, faults, writer))
        delayed = faults.stall_ms or faults.ttft_ms or faults.itl_ms
        if not delayed and (job.adapter is None or engine.slots.can_start(job.adapter)):
            return await self._whole(job, surface, faults)
        response = await unless_disconnected(self._whole(job, surface, faults), request.receive)
        if response is None:  # nobody reads this; vLLM answers a gone client the same way
            return bad_request("Client disconnected").response()
        return response

    async def _whole(self, job: Job, surface: Surface, faults: Faults) -> Response:
        try:
            await _pause(faults.stall_ms)
            async with self._engine.generating(
                job.adapter, job.arrival, job.prompt_tokens, job.max_tokens
            ) as generation:
                await _pause(faults.ttft_ms)
                generation.emitted(1)
                await _pause(faults.itl_ms * (job.steps - 1))
                generation.emitted(job.completion_tokens - 1)
                generation.finish_reason = job.answers[-1].finish_reason
        except asyncio.CancelledError:
            self._engine.record_abort()
            raise
        return json_response(surface.response())

    async def _stream(self, job: Job, surface: Surface, faults: Faults, out: EventWriter) -> bool:
        """Send the events; False when the stream was cut on purpose (cut_after_chunks)."""
        try:
            await _pause(faults.stall_ms)
            await out.start()
            async with self._engine.generating(
                job.adapter, job.arrival, job.prompt_tokens, job.max_tokens
            ) as generation:
                await _pause(faults.ttft_ms)
                for frame in surface.opening():
                    await out.send(frame)
                schedule = enumerate(job.schedule(), start=1)
                for sent, (step_starts, index, piece, finish_reason, tokens) in schedule:
                    if step_starts:
                        await _pause(faults.itl_ms)
                    frame = surface.token(index, piece, finish_reason, tokens)
                    if frame is not None:
                        await out.send(frame)
                    generation.emitted(1)
                    if sent == faults.cut_after_chunks:
                        generation.finish_reason = "error"
                        return False
                generation.finish_reason = job.answers[-1].finish_reason
                for frame in surface.closing():
                    await out.send(frame)
                return True
        except asyncio.CancelledError:
            self._engine.record_abort()
            raise
