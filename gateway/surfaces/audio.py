"""`POST /v1/audio/transcriptions` and `/v1/audio/translations`: an audio file in, its text out.

The body is multipart/form-data (the openai SDK's `audio.transcriptions.create`: text fields,
then the `file` part), read up to `server.max_audio_bytes` (OpenAI's 25 MiB) rather than the
JSON routes' limit. It is parsed with python-multipart, the parser Starlette (and so vLLM's
FastAPI server) uses, and the gateway reads what it must trust: `model`, `stream` and
`stream_include_usage` (vLLM 0.32's flattened stream options), `prompt` (the text the input
policy reads), `max_completion_tokens` (the estimate); every field but `file` must be a text
field, and only the names vLLM reads as arrays (`timestamp_granularities[]`) may repeat.

The body vLLM gets is rebuilt from what the gateway read: the text fields re-encoded (the model
renamed to the tenant's adapter or base model, the booleans as "true"/"false", streams asking
for usage), the file part's bytes copied as they came, never decoded. So vLLM reads exactly the
form the gateway checked: no quirk of the client's encoding (an RFC 2231 `name*=`, odd part
headers) can make vLLM read another model than the tenant was allowed; a duplicate field and a
preamble are refused.

Answers (vLLM 0.32): a whole answer is JSON whatever `response_format` says (`{"text", "usage"}`
for `json` and `text`, segments for `verbose_json`; vLLM refuses `srt` and `vtt`); a stream is
`transcription.chunk` (`translation.chunk`) events shaped as chat deltas (`choices[].delta.
content`), ended by `data: [DONE]`, the usage chunk (`choices: []`) last when asked for.
Usage: a stream's usage chunk carries vLLM's token counts; a whole answer carries none (a
transcription reports the audio's seconds, a translation nothing), so it is charged an estimate:
its text's length as completion tokens, plus the task's marker tokens as its prompt. The output
guard reads the streamed deltas as the chat guard does, and a whole answer's `text`; when it
changes that text, the `segments` and `words` of `verbose_json`, which repeat it piecewise, are
dropped rather than rewritten piece by piece. A model that cannot transcribe (a text model:
vLLM 0.32 then serves no audio routes) answers vLLM's 404, relayed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.filters import ChunkFilter
from gateway.core.request import InferenceRequest, RequestTexts, TextSlot
from gateway.limits.estimate import MAX_TOKENS, text_tokens
from gateway.safety.output_guard import OutputGuard
from gateway.safety.runtime import PolicyRuntime
from gateway.safety.text_guard import TextGuard
from gateway.surfaces.base import Surface
from gateway.surfaces.openai import DONE, EVENT_END, OpenAIUsage
from gateway.surfaces.prompt import PROMPT_ROLE

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MULTIPART = b"multipart/form-data"
FILE_FIELD = "file"
# What Starlette allows a text field (its max_part_size) and a form (max_fields): vLLM's
# limits, so that the audio limit does not make room for text the JSON routes would refuse.
MAX_FIELD_BYTES = 1024 * 1024
MAX_FIELDS = 1000
# The decoder prompt's marker tokens (Whisper: start of transcript, language, task, no
# timestamps), before any `prompt` text.
TASK_TOKENS = 4
_BOOLEAN_FIELDS = ("stream", "stream_include_usage")
# pydantic's strings for a boolean, as vLLM's form model reads them
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
# RFC 2046's boundary characters: what can be sent on quoted, as it came
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_NAME = re.compile(r'[^\x00-\x1f\x7f"\\]+')
_MEDIA_TYPE = re.compile(rb"[0-9a-z!#$&^_.+-]+/[0-9a-z!#$&^_.+-]+")
_FILENAME_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')
_SEPARATOR = b"\r\n"


@dataclass(frozen=True, slots=True)
class Upload:
    """The file part: its bytes as the client sent them (in the pieces the parser gave)."""

    filename: str
    content_type: str
    pieces: tuple[bytes, ...]


@dataclass(slots=True, kw_only=True)
class AudioRequest(InferenceRequest):
    """`body` holds the text fields (a list for a repeated `name[]`, booleans as bools)."""

    upload: Upload
    boundary: bytes


@dataclass(slots=True)
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: bytes = b""
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0


class _FormReader:
    """python-multipart's callbacks: the parts, their headers and their data."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_piece,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        if len(self.parts) >= MAX_FIELDS:
            raise BadRequest(f"The form has more than {MAX_FIELDS} parts.")
        self.parts.append(_Part())
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.lower()
        if name == b"content-disposition":
            self._disposition = self._header_value
        elif name == b"content-type":
            self.parts[-1].content_type = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        part = self.parts[-1]
        disposition, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise BadRequest("Every part of the form needs a Content-Disposition with a name.")
        part.name = _field_name(name)
        filename = options.get(b"filename")
        if filename is not None:
            part.filename = filename.decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.filename is None and part.size > MAX_FIELD_BYTES:
            raise BadRequest(
                f"The field '{part.name}' is larger than {MAX_FIELD_BYTES} bytes.", part.name
            )
        part.pieces.append(data[start:end])

    def _end(self) -> None:
        self.ended = True


class AudioSurface(Surface):
    """Transcriptions and translations: the same form, the same answers."""

    uploads = True
    tenant_fields = False  # vLLM 0.32's speech-to-text requests have no cache_salt or priority

    def parse(self, raw: bytes) -> InferenceRequest:
        return self.parse_request(raw, None)  # a body without its content type is no form

    def parse_request(self, raw: bytes, content_type: bytes | None) -> AudioRequest:
        boundary = _boundary(content_type)
        reader = _FormReader()
        try:
            parser = MultipartParser(boundary, reader.callbacks())
            parser.write(raw)
        except FormParserError as exc:
            raise BadRequest(f"The multipart body is malformed: {exc}") from None
        if not reader.ended:
            raise BadRequest("The multipart body is malformed: it ends before its last boundary.")
        body, upload = _fields(reader.parts)
        model = body.get("model")
        stream = body.get("stream", False)
        return AudioRequest(
            raw,
            body,
            model,
            stream,
            stream and body.get("stream_include_usage", False),
            content_type=f'multipart/form-data; boundary="{boundary.decode()}"',
            upload=upload,
            boundary=boundary,
        )

    def texts(self, request: InferenceRequest) -> RequestTexts:
        body = request.body
        if not isinstance(body.get("prompt"), str):
            return RequestTexts("prompt")
        return RequestTexts("prompt", [TextSlot(body, "prompt", PROMPT_ROLE, "prompt")], 1)

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        """The task's markers and the prompt. The audio is not counted: its tokens depend on
        the model and the audio's length, which only decoding it tells (vLLM counts Whisper's
        mel frames, 100 a second, in a stream's prompt_tokens)."""
        prompt = request.body.get("prompt")
        return TASK_TOKENS + (text_tokens(len(prompt)) if isinstance(prompt, str) else 0)

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        limit = request.body.get("max_completion_tokens")
        try:
            completion = int(limit) if isinstance(limit, str) else default_max_tokens
        except ValueError:  # vLLM refuses it; the reservation stays the default's
            completion = default_max_tokens
        prompt = self.estimate_prompt_tokens(request)
        return min(prompt + max(0, completion), MAX_TOKENS)

    def upstream_body(self, request: InferenceRequest, upstream_model: str | None) -> bytes:
        """The form rebuilt: the text fields from `body`, then the file's own bytes."""
        assert isinstance(request, AudioRequest)
        body = request.body
        if upstream_model is not None:
            body["model"] = upstream_model
        if request.stream:
            body["stream_include_usage"] = True
        delimiter = b"--" + request.boundary
        out: list[bytes] = []
        for name, value in body.items():
            for item in value if isinstance(value, list) else (value,):
                out += (delimiter, _SEPARATOR, _disposition(name), _SEPARATOR, _SEPARATOR)
                out += (_field_text(item).encode(), _SEPARATOR)
        upload = request.upload
        filename = _FILENAME_UNSAFE.sub("_", upload.filename)
        out += (delimiter, _SEPARATOR, _disposition(FILE_FIELD, filename), _SEPARATOR)
        out += (b"Content-Type: ", upload.content_type.encode(), _SEPARATOR, _SEPARATOR)
        out += (*upload.pieces, _SEPARATOR, delimiter, b"--", _SEPARATOR)
        return b"".join(out)

    def usage_filter(self, ctx: RequestContext) -> TranscriptUsage:
        return TranscriptUsage(ctx)

    def output_guard(self, policy: PolicyRuntime) -> ChunkFilter | None:
        stream_guard, text_guard = policy.output_guard(), policy.text_guard()
        if stream_guard is None or text_guard is None:
            return None
        return TranscriptGuard(stream_guard, text_guard)

    def stream_finished(self, last_events: bytes) -> bool:
        return last_events.endswith(DONE)

    def stream_error(self, error: GatewayError) -> bytes:
        return b"data: " + error.body() + EVENT_END


class Transcriptions(AudioSurface):
    """`POST /v1/audio/transcriptions`: the audio's text in its own language."""

    path = "/v1/audio/transcriptions"
    name = "audio.transcriptions"


class Translations(AudioSurface):
    """`POST /v1/audio/translations`: the audio's text in English."""

    path = "/v1/audio/translations"
    name = "audio.translations"


class TranscriptUsage(OpenAIUsage):
    """A stream's usage is vLLM's (its usage chunk, as chat's); a whole answer has none in
    tokens, so it is charged its text's estimate."""

    __slots__ = ()

    def on_whole(self, body: bytes) -> bytes:
        text = _text_of(_whole(body))
        if text is not None:
            completion = text_tokens(len(text))
            self._ctx.usage = {
                "prompt_tokens": TASK_TOKENS,
                "completion_tokens": completion,
                "total_tokens": TASK_TOKENS + completion,
            }
        return body


class TranscriptGuard:
    """The output rules on a transcript: streamed chunks are chat deltas (the chat guard);
    a whole answer's `text` is scanned as one text."""

    __slots__ = ("_stream", "_text")

    def __init__(self, stream_guard: OutputGuard, text_guard: TextGuard[int]) -> None:
        self._stream = stream_guard
        self._text = text_guard

    @property
    def ended(self) -> bool:
        return self._stream.ended

    def on_events(self, events: bytes) -> bytes:
        return self._stream.on_events(events)

    def on_whole(self, body: bytes) -> bytes:
        document = _whole(body)
        text = _text_of(document)
        if document is None or text is None:
            return body
        released, blocked = self._text.feed(0, text, final=True)
        if released == text and not blocked:
            return body
        document["text"] = released
        for detail in ("segments", "words"):  # they repeat the text, piece by piece
            document.pop(detail, None)
        return orjson.dumps(document)


def _whole(body: bytes) -> dict[str, Any] | None:
    """A whole answer, if it is a JSON object."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _text_of(document: dict[str, Any] | None) -> str | None:
    text = document.get("text") if document is not None else None
    return text if isinstance(text, str) else None


def _boundary(content_type: bytes | None) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type != MULTIPART:
        got = (content_type or b"none").decode("latin-1")
        raise BadRequest(
            f"Invalid Content-Type header ({got}): expected multipart/form-data, with the "
            "audio in its 'file' part."
        )
    boundary = options.get(b"boundary", b"")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadRequest(
            "The Content-Type header needs a multipart boundary of 1 to 70 characters (RFC 2046)."
        )
    return boundary


def _field_name(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = ""
    if not _NAME.fullmatch(name):
        raise BadRequest("A form field's name is empty or has quotes or control characters.")
    return name


def _fields(parts: list[_Part]) -> tuple[dict[str, Any], Upload]:
    """The text fields (checked where the gateway reads them) and the file."""
    body: dict[str, Any] = {}
    upload: Upload | None = None
    for part in parts:
        name = part.name
        if name == FILE_FIELD:
            if part.filename is None:
                raise BadRequest(
                    "Invalid 'file': expected an uploaded file, but got a text field.", "file"
                )
            if upload is not None:
                raise BadRequest("'file' is given more than once.", "file")
            upload = Upload(part.filename, _media_type(part.content_type), tuple(part.pieces))
            continue
        if part.filename is not None:
            raise BadRequest(f"Invalid '{name}': only 'file' may be a file.", name)
        try:
            value = b"".join(part.pieces).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Invalid '{name}': not UTF-8 text.", name) from None
        if not value:  # FastAPI reads an empty form field as one left out
            continue
        if name.endswith("[]"):
            body.setdefault(name, []).append(value)
        elif name in body:
            raise BadRequest(f"'{name}' is given more than once.", name)
        else:
            body[name] = _boolean(name, value) if name in _BOOLEAN_FIELDS else value
    if upload is None:
        raise BadRequest(f"Missing required parameter: '{FILE_FIELD}'.", FILE_FIELD)
    return body, upload


def _boolean(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(
        f"Invalid '{name}': expected a boolean ('true' or 'false'), got {value!r}.", name
    )


def _media_type(raw: bytes) -> str:
    """The file's media type, without parameters; octet-stream where it has none we can
    send on as it is."""
    media_type, _ = parse_options_header(raw)
    return media_type.decode() if _MEDIA_TYPE.fullmatch(media_type) else "application/octet-stream"


def _field_text(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _disposition(name: str, filename: str | None = None) -> bytes:
    header = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        header += f'; filename="{filename}"'
    return header.encode()
