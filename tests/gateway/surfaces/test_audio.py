"""Audio transcriptions and translations: the codec (the multipart form as the openai SDK
sends it, hostile forms, the body vLLM gets as vLLM's own parser reads it, usage, the output
guard), the pipeline end to end in this process (the audio size limit, tenant model names,
usage into the limiter, vLLM's errors), and the openai SDK through a gateway process in front
of the stand-in."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.limits.estimate import text_tokens
from gateway.surfaces import SURFACES
from gateway.surfaces.audio import (
    MAX_FIELD_BYTES,
    TASK_TOKENS,
    AudioRequest,
    Transcriptions,
    TranscriptUsage,
    Translations,
)
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import Gateway
from tests.fixtures.in_process import FakeVllm, in_process_gateway, sse
from tests.fixtures.processes import ServerProcess
from tests.gateway.safety.helpers import rule, runtime
from tests.gateway.surfaces.test_responses import new_key

TRANSCRIPTIONS = Transcriptions()
TRANSLATIONS = Translations()
BOUNDARY = "b0undary"
FORM = f"multipart/form-data; boundary={BOUNDARY}".encode()
# Audio whose bytes look like the form's own framing, and every byte value.
AUDIO = b"RIFF\r\n--b0undar\r\n--\r\n\r\n" + bytes(range(256)) * 8 + b"--b0undary-"
SCRIBE = {"scribe": {"base_model": "base", "adapter": "tenant-a"}}
NO_WORDS = {"rules": [{"name": "w", "detector": "deny_terms", "terms": ["secret plan"]}]}


def sdk_form(audio: bytes = AUDIO, **fields: str) -> tuple[bytes, bytes]:
    """The body and content type as the openai SDK sends them (httpx's multipart encoder)."""
    request = httpx.Request(
        "POST", "http://x", data=fields, files={"file": ("speech.wav", audio, "audio/wav")}
    )
    return request.read(), request.headers["content-type"].encode()


def part(name: str, value: bytes, extra: str = "", headers: str = "") -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"{extra}\r\n{headers}'
    return f"--{BOUNDARY}\r\n{head}\r\n".encode() + value + b"\r\n"


def form(*parts: bytes, end: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


FILE = part("file", AUDIO, '; filename="a.wav"', "Content-Type: audio/wav\r\n")


def refused(raw: bytes, content_type: bytes | None = FORM) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        TRANSCRIPTIONS.parse_request(raw, content_type)
    assert caught.value.status == 400
    return caught.value


async def vllm_reads(body: bytes, content_type: str) -> dict[str, Any]:
    """The form as vLLM's server reads it (Starlette over python-multipart): each field's
    values; a file as (filename, content type, bytes)."""
    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"content-type", content_type.encode())],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    read: dict[str, Any] = {}
    async with Request(scope, receive).form() as fields:
        for name, value in fields.multi_items():
            if isinstance(value, UploadFile):
                value = (value.filename, value.content_type, await value.read())
            read.setdefault(name, []).append(value)
    return read


# --- the codec ---------------------------------------------------------------------------


def test_both_routes_are_served_and_read_up_to_the_audio_limit() -> None:
    served = {surface.path: surface for surface in SURFACES}
    assert type(served["/v1/audio/transcriptions"]) is Transcriptions
    assert type(served["/v1/audio/translations"]) is Translations
    assert served["/v1/audio/translations"].uploads and not served["/v1/chat/completions"].uploads
    assert not TRANSCRIPTIONS.tenant_fields  # vLLM's speech-to-text requests have neither


def test_the_sdks_form_is_read_model_stream_and_prompt() -> None:
    raw, content_type = sdk_form(model="scribe", stream="true", prompt="names: Ada", language="en")
    request = TRANSCRIPTIONS.parse_request(raw, content_type)
    assert isinstance(request, AudioRequest)
    assert (request.model, request.stream, request.client_wants_usage) == ("scribe", True, False)
    assert request.body == {
        "model": "scribe",
        "stream": True,
        "prompt": "names: Ada",
        "language": "en",
    }
    assert (request.upload.filename, request.upload.content_type) == ("speech.wav", "audio/wav")
    assert b"".join(request.upload.pieces) == AUDIO
    slots = TRANSCRIPTIONS.texts(request).slots
    assert [(slot.param, slot.text) for slot in slots] == [("prompt", "names: Ada")]
    prompt = TASK_TOKENS + text_tokens(len("names: Ada"))
    assert TRANSCRIPTIONS.estimate_prompt_tokens(request) == prompt
    assert TRANSCRIPTIONS.estimate_tokens(request, 500) == prompt + 500
    limited = TRANSCRIPTIONS.parse_request(*sdk_form(max_completion_tokens="20"))
    assert TRANSCRIPTIONS.estimate_tokens(limited, 500) == TASK_TOKENS + 20
    asked = TRANSCRIPTIONS.parse_request(*sdk_form(stream="1", stream_include_usage="yes"))
    assert (asked.stream, asked.client_wants_usage) == (True, True)
    # FastAPI reads an empty field as left out: vLLM serves its base model
    empty = TRANSCRIPTIONS.parse_request(*sdk_form(model="", stream=""))
    assert (empty.model, empty.stream, empty.body) == (None, False, {})


@pytest.mark.parametrize(
    ("content_type", "raw", "param", "words"),
    [
        (b"application/json", b'{"model": "m"}', None, "expected multipart/form-data"),
        (None, form(FILE), None, "expected multipart/form-data"),
        (b"multipart/form-data", form(FILE), None, "boundary"),
        (b'multipart/form-data; boundary="a\\"b"', form(FILE), None, "boundary"),
        (b"multipart/form-data; boundary=" + b"x" * 71, form(FILE), None, "boundary"),
        (FORM, b"not a form at all", None, "malformed"),
        (FORM, b"a preamble\r\n" + form(FILE), None, "malformed"),
        (FORM, form(FILE, end=False), None, "ends before its last boundary"),
        (FORM, form(FILE)[:-40], None, "ends before its last boundary"),
        (FORM, form(FILE, part("x", b"", headers="X: " + "y" * 5000 + "\r\n")), None, "malformed"),
        (FORM, form(b"--b0undary\r\nContent-Type: text/plain\r\n\r\nv\r\n", FILE), None, "name"),
        (FORM, form(part("", b"v"), FILE), None, "name"),
        (FORM, form(part('a"b', b"v"), FILE), None, "name"),
        (FORM, form(part("model", b"m")), "file", "Missing required parameter: 'file'"),
        (FORM, form(part("file", b"not audio")), "file", "expected an uploaded file"),
        (FORM, form(FILE, FILE), "file", "more than once"),
        (FORM, form(part("model", b"a"), part("model", b"b"), FILE), "model", "more than once"),
        (FORM, form(part("model", b"m", '; filename="m"'), FILE), "model", "only 'file'"),
        (FORM, form(part("prompt", b"\xff\xfe"), FILE), "prompt", "UTF-8"),
        (FORM, form(part("stream", b"maybe"), FILE), "stream", "a boolean"),
        (FORM, form(part("prompt", b"x" * (MAX_FIELD_BYTES + 1)), FILE), "prompt", "larger"),
        (FORM, form(*(part(f"f{i}", b"v") for i in range(1000)), FILE), None, "more than 1000"),
    ],
)
def test_a_hostile_or_wrong_form_is_400_saying_what_is_wrong(
    content_type: bytes | None, raw: bytes, param: str | None, words: str
) -> None:
    error = refused(raw, content_type)
    assert error.param == param
    assert words in error.message
    assert json.loads(error.body())["error"]["type"] == "invalid_request_error"


async def test_vllm_reads_the_renamed_model_and_the_files_bytes_as_they_came() -> None:
    raw, content_type = sdk_form(
        model="scribe", prompt="hi", **{"timestamp_granularities[]": "word"}
    )
    request = TRANSCRIPTIONS.parse_request(raw, content_type)
    body = TRANSCRIPTIONS.upstream_body(request, "tenant-a")
    assert request.content_type == f'multipart/form-data; boundary="{request.boundary.decode()}"'
    read = await vllm_reads(body, request.content_type)
    assert read == {
        "model": ["tenant-a"],
        "prompt": ["hi"],
        "timestamp_granularities[]": ["word"],
        "file": [("speech.wav", "audio/wav", AUDIO)],
    }
    assert AUDIO in body  # copied, never decoded


async def test_a_stream_asks_vllm_for_usage_in_vllms_own_words() -> None:
    request = TRANSLATIONS.parse_request(*sdk_form(model="scribe", stream="TRUE"))
    read = await vllm_reads(TRANSLATIONS.upstream_body(request, None), request.content_type)
    assert read["stream"] == ["true"] and read["stream_include_usage"] == ["true"]
    assert read["model"] == ["scribe"]


async def test_what_the_gateway_read_is_what_vllm_reads_whatever_the_encoding() -> None:
    """A `name*=` (RFC 2231, which RFC 7578 forbids) is gone from the body vLLM gets, and
    so is a client's isolation field: vLLM can only read the fields the gateway checked."""
    sneaky = form(
        part("model", b"scribe"),
        part("file", AUDIO, "; name*=UTF-8''model; filename=\"a.wav\""),
        part("cache_salt", b"mine"),
    )
    request = TRANSCRIPTIONS.parse_request(sneaky, FORM)
    request.body.pop("cache_salt")  # what the isolation stage strips
    read = await vllm_reads(TRANSCRIPTIONS.upstream_body(request, "tenant-a"), request.content_type)
    assert read == {"model": ["tenant-a"], "file": [("a.wav", "application/octet-stream", AUDIO)]}


def test_a_whole_answer_is_charged_its_texts_estimate_and_a_stream_vllms_usage() -> None:
    ctx = RequestContext("r")
    usage = TranscriptUsage(ctx)
    body = b'{"text":"' + b"word " * 10 + b'","usage":{"type":"duration","seconds":3}}'
    assert usage.on_whole(body) == body
    completion = text_tokens(len("word " * 10))
    assert ctx.usage == {
        "prompt_tokens": TASK_TOKENS,
        "completion_tokens": completion,
        "total_tokens": TASK_TOKENS + completion,
    }
    vllms = {"prompt_tokens": 204, "total_tokens": 220, "completion_tokens": 16}
    events = b"".join(
        sse({"object": "transcription.chunk", "choices": [], "usage": vllms}, done=True)
    )
    assert TranscriptUsage(ctx).on_events(events) == b"data: [DONE]\n\n"  # not asked for
    assert ctx.usage == vllms


def test_the_output_guard_reads_a_whole_text_and_the_streamed_deltas() -> None:
    guard = TRANSCRIPTIONS.output_guard(runtime(rule("w", "deny_terms", terms=["secret plan"])))
    assert guard is not None
    answer = {"text": "the secret plan is out", "segments": [{"text": "the secret"}], "duration": 2}
    guarded = orjson.loads(guard.on_whole(orjson.dumps(answer)))
    assert guarded == {"text": "the ", "duration": 2}  # cut at the match, no segments left
    clean = b'{"text":"nothing to see","usage":{"type":"duration","seconds":1}}'
    assert guard.on_whole(clean) is clean
    streamed = TRANSCRIPTIONS.output_guard(runtime(rule("w", "deny_terms", terms=["secret plan"])))
    assert streamed is not None
    head = {"id": "trsc-1", "object": "transcription.chunk", "created": 1, "model": "base"}
    out = b"".join(
        streamed.on_events(event)
        for event in sse(
            {**head, "choices": [{"delta": {"content": "the secret"}}]},
            {**head, "choices": [{"delta": {"content": " plan"}}]},
        )
        if not streamed.ended
    )
    assert streamed.ended and b"plan" not in out and out.endswith(b"data: [DONE]\n\n")
    assert b'"finish_reason":"content_filter"' in out
    assert TRANSCRIPTIONS.output_guard(runtime(rule("in", "email", "mask", "input"))) is None


# --- in process: the pipeline end to end -------------------------------------------------


def upstream_answer(text: str = "hello there") -> Any:
    async def answer(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        content_type = request.headers["content-type"]
        read = await vllm_reads(request.body or b"", content_type)
        if read.get("stream") == ["true"]:
            head = {"id": "trsc-1", "object": "transcription.chunk", "model": read["model"][0]}
            usage = {"prompt_tokens": 104, "total_tokens": 106, "completion_tokens": 2}
            events = sse(
                {**head, "choices": [{"delta": {"content": "hello"}}]},
                {**head, "choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}]},
                {**head, "choices": [], "usage": usage},
            )
            return MemoryResponse(200, chunks=events, content_type="text/event-stream")
        answer = {"text": text, "usage": {"type": "duration", "seconds": 1}}
        return MemoryResponse(200, orjson.dumps(answer))

    return answer


async def test_vllm_gets_the_adapter_and_the_audio_and_the_client_the_text(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/audio/transcriptions"] = upstream_answer()
    async with in_process_gateway(fake, tmp_path, SCRIBE) as (client, key):
        raw, content_type = sdk_form(model="scribe", priority="-9")
        response = await client.post(
            "/v1/audio/transcriptions",
            content=raw,
            headers={"authorization": f"Bearer {key}", "content-type": content_type.decode()},
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"text": "hello there", "usage": {"type": "duration", "seconds": 1}}
    sent = fake.inference_requests[0]
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    read = await vllm_reads(sent.body or b"", sent.headers["content-type"])
    assert read == {"model": ["tenant-a"], "file": [("speech.wav", "audio/wav", AUDIO)]}


async def test_a_stream_is_renamed_and_its_usage_chunk_dropped_unless_asked(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/audio/translations"] = upstream_answer()
    async with in_process_gateway(fake, tmp_path, SCRIBE) as (client, key):
        headers = {"authorization": f"Bearer {key}"}
        texts = []
        for asked in ("false", "true"):
            data = {"model": "scribe", "stream": "true", "stream_include_usage": asked}
            response = await client.post(
                "/v1/audio/translations",
                data=data,
                files={"file": ("a.wav", AUDIO)},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            texts.append(response.text)
    plain, with_usage = (
        [json.loads(e[6:]) for e in t.split("\n\n") if e[6:7] == "{"] for t in texts
    )
    assert [chunk["model"] for chunk in plain] == ["scribe", "scribe"]
    assert [chunk["choices"] for chunk in with_usage][-1] == []
    assert with_usage[-1]["usage"]["prompt_tokens"] == 104
    assert all(text.endswith("data: [DONE]\n\n") for text in texts)


async def test_names_the_tenant_lacks_are_404_and_a_form_without_a_key_401(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/audio/transcriptions"] = upstream_answer()
    async with in_process_gateway(fake, tmp_path, SCRIBE) as (client, key):
        other = await new_key(
            client, {"their-scribe": {"base_model": "base", "adapter": "tenant-b"}}
        )
        mine = {"authorization": f"Bearer {key}"}
        answers = [
            await client.post(
                "/v1/audio/transcriptions",
                data={"model": model},
                files={"file": ("a.wav", AUDIO)},
                headers=headers,
            )
            for model, headers in (("tenant-a", mine), ("their-scribe", mine), ("scribe", other))
        ]
        anonymous = await client.post(
            "/v1/audio/transcriptions", data={"model": "scribe"}, files={"file": ("a.wav", AUDIO)}
        )
        wrong_type = await client.post(
            "/v1/audio/transcriptions", json={"model": "scribe", "file": "a.wav"}, headers=mine
        )
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "model_not_found"
    assert anonymous.status_code == 401
    assert wrong_type.status_code == 400
    assert "multipart/form-data" in wrong_type.json()["error"]["message"]
    assert fake.inference_requests == []


async def counted(chunks: int, size: int, read: list[int]) -> AsyncIterator[bytes]:
    """A form's body in `chunks` chunks of `size` bytes, counting those the server read."""
    yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'.encode()
    yield b"\r\n"
    for _ in range(chunks):
        read.append(size)
        yield b"\0" * size


async def test_the_audio_limit_is_its_own_and_a_larger_body_is_413_unread(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/audio/transcriptions"] = upstream_answer()
    server = {"max_body_bytes": 10_000, "max_audio_bytes": 100_000}
    async with in_process_gateway(fake, tmp_path, SCRIBE, server=server) as (client, key):
        headers = {"authorization": f"Bearer {key}"}
        audio = os.urandom(50_000)  # over the JSON limit, within the audio one
        served = await client.post(
            "/v1/audio/transcriptions",
            data={"model": "scribe"},
            files={"file": ("a.wav", audio)},
            headers=headers,
        )
        read: list[int] = []
        too_big = await client.post(
            "/v1/audio/transcriptions",
            content=counted(1000, 10_000, read),  # 10 MB offered
            headers={**headers, "content-type": FORM.decode()},
        )
        chat = await client.post(
            "/v1/chat/completions",
            json={"model": "scribe", "messages": [{"role": "user", "content": "x" * 50_000}]},
            headers=headers,
        )
    assert served.status_code == 200, served.text
    sent = fake.inference_requests[0]
    assert (await vllm_reads(sent.body or b"", sent.headers["content-type"]))["file"][0][2] == audio
    assert too_big.status_code == 413
    assert too_big.json()["error"]["message"].endswith("limit of 100000 bytes.")
    assert sum(read) <= 100_000 + 10_000  # refused once over the limit, the rest never read
    assert chat.status_code == 413


async def test_usage_settles_the_reservation_and_the_policy_reads_the_prompt(
    tmp_path: Path,
) -> None:
    fake = FakeVllm()
    fake.routes["/v1/audio/transcriptions"] = upstream_answer("word " * 40)
    limit = 100_000
    policies = {"safety": {"policies": {"p": NO_WORDS}}}
    async with in_process_gateway(fake, tmp_path, SCRIBE, **policies) as (client, _):
        headers = await new_key(client, SCRIBE, "p", {"tokens_per_minute": limit})
        first, second = [
            await client.post(
                "/v1/audio/transcriptions",
                data={"model": "scribe", "max_completion_tokens": "300"},
                files={"file": ("a.wav", AUDIO)},
                headers=headers,
            )
            for _ in range(2)
        ]
        blocked = await client.post(
            "/v1/audio/transcriptions",
            data={"model": "scribe", "prompt": "about the secret plan"},
            files={"file": ("a.wav", AUDIO)},
            headers=headers,
        )
    assert first.status_code == second.status_code == 200, first.text
    estimate = TASK_TOKENS + 300
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == limit - estimate
    charged = TASK_TOKENS + text_tokens(len("word " * 40))
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == limit - charged - estimate
    assert blocked.status_code == 400
    assert blocked.json()["error"]["code"] == "content_policy_violation"
    assert len(fake.inference_requests) == 2


async def test_what_the_model_cannot_do_is_vllms_error_relayed(tmp_path: Path) -> None:
    async def text_model(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        return MemoryResponse(404, b'{"detail":"Not Found"}')  # vLLM 0.32, a text model

    fake = FakeVllm()
    fake.routes["/v1/audio/transcriptions"] = text_model
    async with in_process_gateway(fake, tmp_path) as (client, key):
        response = await client.post(
            "/v1/audio/transcriptions",
            data={"model": "base", "stream": "true"},
            files={"file": ("a.wav", AUDIO)},
            headers={"authorization": f"Bearer {key}"},
        )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "The model server answered: Not Found"


# --- a gateway process in front of the stand-in ------------------------------------------


def test_the_openai_sdk_transcribes_and_translates_through_the_gateway(
    standin: ServerProcess, gateway: Gateway
) -> None:
    client = openai.OpenAI(api_key=gateway.api_key, base_url=gateway.url + "/v1", max_retries=0)
    direct = openai.OpenAI(api_key="unused", base_url=standin.url + "/v1", max_retries=0)
    audio = ("speech.wav", os.urandom(64_000), "audio/wav")  # two seconds of 16 kHz PCM
    text = client.audio.transcriptions.create(model="tenant-a", file=audio, language="en")
    assert text.text == direct.audio.transcriptions.create(model="tenant-a", file=audio).text
    assert text.usage is not None and text.usage.type == "duration"
    with pytest.deprecated_call():  # the SDK marks OpenAI's translations API deprecated
        translated = client.audio.translations.create(model="tenant-b", file=audio)
        assert (
            translated.text == direct.audio.translations.create(model="tenant-b", file=audio).text
        )
    assert translated.text != text.text
    stream = client.audio.transcriptions.create(model="tenant-a", file=audio, stream=True)
    chunks = [event.model_dump() for event in stream]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == text.text
    assert {c["model"] for c in chunks} == {"tenant-a"} and chunks[-1]["choices"][0][
        "finish_reason"
    ]
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="nope", file=audio)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.transcriptions.create(model="base", file=audio, response_format="srt")
