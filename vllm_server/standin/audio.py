"""POST /v1/audio/transcriptions and /v1/audio/translations in vLLM 0.32's shapes.

The form is read as vLLM reads it (Starlette over python-multipart, FastAPI's empty-field
rule); the audio is never decoded: its "duration" is its size as 16 kHz 16-bit mono PCM, and
its "text" is drawn from its bytes and the prompt, like any other answer here (so the same
file gets the same words, and each adapter other ones).

Whole answers are JSON whatever `response_format` says: a transcription is `{"text", "usage":
{"type": "duration", "seconds"}}`, a translation `{"text"}`. `srt` and `vtt` are refused as
vLLM refuses them, and so is `verbose_json` (vLLM serves it only for models with segment
timestamps). A stream is `transcription.chunk` (`translation.chunk`) events dumped with
exclude_unset: a chunk per non-empty token `{"delta": {"content"}}`, the last with
`finish_reason` and `stop_reason`, the usage chunk (`choices: []`) when
`stream_include_usage` is true, then `data: [DONE]`. Prompt tokens: the decoder's task
markers and the prompt's words, plus Whisper's audio count (one per 10 ms mel frame).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time

import orjson
from starlette.datastructures import FormData, UploadFile

from vllm_server.standin import text
from vllm_server.standin.engine import Engine
from vllm_server.standin.errors import bad_request, missing_field, validation_error, wrong_type
from vllm_server.standin.jobs import Job
from vllm_server.standin.shapes import usage
from vllm_server.standin.streaming import data_frame

TASK_TOKENS = 4  # <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>
PCM_BYTES_PER_SECOND = 16_000 * 2
MEL_FRAMES_PER_SECOND = 100  # Whisper: 16 kHz / hop length 160
_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_TRUE = ("1", "on", "t", "true", "y", "yes")
_FALSE = ("0", "off", "f", "false", "n", "no")


def audio_job(engine: Engine, form: FormData, task: str) -> tuple[Job, float]:
    """The job for a form, and the audio's duration in seconds."""
    fields = {key: value for key, value in form.multi_items() if value != ""}
    upload = fields.get("file")
    if upload is None:
        raise missing_field("file", fields)
    if not isinstance(upload, UploadFile):
        raise bad_request("Expected 'file' to be a file-like object, not 'str'.")
    response_format = _text(fields, "response_format") or "json"
    if response_format not in (*_FORMATS, "diarized_json") or (
        task == "translate" and response_format == "diarized_json"
    ):
        raise validation_error(
            ("body", "response_format"),
            "literal_error",
            "Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'",
            response_format,
        )
    stream = _boolean(fields, "stream")
    include_usage = _boolean(fields, "stream_include_usage")
    if include_usage and not stream:
        raise bad_request(
            "Stream options can only be defined when `stream=True`. "
            "(parameter=stream_include_usage, value=True)",
            "stream_include_usage",
        )
    model, adapter = engine.resolve_model(_text(fields, "model"))
    if response_format not in ("json", "text"):
        if response_format in ("srt", "vtt"):
            raise bad_request(
                "Currently only support response_format: "
                "`text`, `json`, `verbose_json` or `diarized_json`"
            )
        raise bad_request(f"Currently do not support {response_format} for {model}")
    audio = upload.file.read()
    seconds = len(audio) / PCM_BYTES_PER_SECOND
    prompt = _text(fields, "prompt") or ""
    max_tokens = _max_tokens(fields, engine.config.max_tokens)
    key = f"{task}\0{hashlib.blake2b(audio, digest_size=16).hexdigest()}\0{prompt}"
    answer = text.answer(engine.config.seed, model, key, max_tokens)
    prompt_tokens = TASK_TOKENS + len(prompt.split()) + math.ceil(seconds * MEL_FRAMES_PER_SECOND)
    job = Job(
        model=model,
        adapter=adapter,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        answers=[answer],
        stream=stream,
        include_usage=include_usage,
        continuous_usage=False,
        arrival=time.monotonic(),
    )
    return job, seconds


def _text(fields: dict[str, str | UploadFile], name: str) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise wrong_type(name, "string", value.filename)


def _boolean(fields: dict[str, str | UploadFile], name: str) -> bool:
    value = _text(fields, name)
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise validation_error(("body", name), "bool_parsing", "Input should be a valid boolean", value)


def _max_tokens(fields: dict[str, str | UploadFile], default: int) -> int:
    value = _text(fields, "max_completion_tokens")
    if value is None:
        return default
    try:
        return max(1, int(value))
    except ValueError:
        raise validation_error(
            ("body", "max_completion_tokens"),
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            value,
        ) from None


class SpeechToTextShapes:
    """A transcription's (or translation's) answer to a job, whole and streamed."""

    def __init__(self, job: Job, task: str, seconds: float):
        self._job = job
        self._task = task
        self._seconds = seconds
        chunk_object, prefix = (
            ("transcription.chunk", "trsc")
            if task == "transcribe"
            else ("translation.chunk", "trsl")
        )
        self._head = {
            "id": f"{prefix}-{secrets.token_hex(16)}",
            "object": chunk_object,
            "created": int(time.time()),
            "model": job.model,
        }

    def response(self) -> dict[str, object]:
        answer = self._job.answers[0]
        if self._task == "translate":  # vLLM reports no usage for a translation
            return {"text": answer.text}
        seconds = math.ceil(self._seconds)  # rounded up, as OpenAI bills it
        return {"text": answer.text, "usage": {"type": "duration", "seconds": seconds}}

    def opening(self) -> list[bytes]:
        return []

    def token(self, index: int, piece: str, finish_reason: str | None, tokens: int) -> bytes | None:
        if finish_reason is None:
            if not piece:
                return None
            choice: dict[str, object] = {"delta": {"content": piece}}
        else:
            choice = {
                "delta": {"content": piece},
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        return data_frame(orjson.dumps({**self._head, "choices": [choice]}))

    def closing(self) -> list[bytes]:
        frames = []
        job = self._job
        if job.include_usage:
            last = {
                **self._head,
                "choices": [],
                "usage": usage(job.prompt_tokens, job.completion_tokens),
            }
            frames.append(data_frame(orjson.dumps(last)))
        return [*frames, data_frame(b"[DONE]")]
