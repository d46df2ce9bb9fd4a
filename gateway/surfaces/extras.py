"""vLLM's extra routes: `/tokenize`, `/detokenize`, rerank, score, `/pooling`, `/classify`.

Each is JSON in, JSON out, never streamed (vLLM answers them whole and ignores `stream`). The
gateway reads the model (renamed to vLLM's name, and back in the answer), the texts the input
policy reads, and an estimate of the tokens from their length; they generate nothing, so the
estimate is the prompt's. The usage is vLLM's `usage` where the answer carries one (rerank,
score, pooling, classify), none otherwise (tokenize, detokenize): those are charged nothing
once settled, but pass the tenant's rate and concurrency limits. What the model cannot do (a
generative model asked to rerank) is vLLM's error, relayed. vLLM 0.32's pooling requests
(rerank, score, pooling, classify: `PoolingBasicRequestMixin`) take `cache_salt` and
`priority`; its tokenize requests do not, so the tenant's isolation fields are not sent there.
Audio transcriptions and translations (multipart bodies) are gateway/surfaces/audio.py.
One codec class may serve several paths (`/rerank`, `/v1/rerank`, `/v2/rerank`): one instance
per path.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.request import InferenceRequest, RequestTexts, TextSlot
from gateway.limits.estimate import MAX_TOKENS, content_chars, text_tokens
from gateway.surfaces.base import Surface
from gateway.surfaces.chat import ChatCompletions
from gateway.surfaces.completions import Completions
from gateway.surfaces.embeddings import Embeddings
from gateway.surfaces.openai import (
    EVENT_END,
    OpenAISurface,
    OpenAIUsage,
    json_object,
    model_and_stream,
    renamed_body,
    wrong_type,
)
from gateway.surfaces.prompt import PROMPT_ROLE, PromptSurface

_CHAT = ChatCompletions()  # the `messages` form of tokenize, pooling and classify


class VllmExtra(Surface):
    """One of vLLM's extra routes, served at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def parse(self, raw: bytes) -> InferenceRequest:
        body = json_object(raw)
        model, _ = model_and_stream(body)  # answered whole, as vLLM answers it
        self.check_body(body)
        return InferenceRequest(raw, body, model, stream=False, client_wants_usage=False)

    @abstractmethod
    def check_body(self, body: dict[str, Any]) -> None:
        """Raise BadRequest unless the fields the gateway reads are there, with their shape."""

    def estimate_tokens(self, request: InferenceRequest, default_max_tokens: int) -> int:
        return min(self.estimate_prompt_tokens(request), MAX_TOKENS)  # generates nothing

    def upstream_body(self, request: InferenceRequest, upstream_model: str | None) -> bytes:
        return renamed_body(request, upstream_model)

    def usage_filter(self, ctx: RequestContext) -> OpenAIUsage:
        return OpenAIUsage(ctx)

    def stream_finished(self, last_events: bytes) -> bool:
        return True  # never streamed: `parse` makes every request whole

    def stream_error(self, error: GatewayError) -> bytes:
        return b"data: " + error.body() + EVENT_END


class TextOrMessages(VllmExtra):
    """A prompt field or chat `messages` (rendered by the chat template): each read as the
    surface of that shape reads it."""

    prompt: ClassVar[PromptSurface]

    def check_body(self, body: dict[str, Any]) -> None:
        codec = self._codec(body)
        field = codec.input_field
        if field not in body:
            raise BadRequest(f"Missing required parameter: '{field}' or 'messages'.", field)
        codec.check_input(body[field])

    def texts(self, request: InferenceRequest) -> RequestTexts:
        return self._codec(request.body).texts(request)

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        return self._codec(request.body).estimate_prompt_tokens(request)

    def _codec(self, body: dict[str, Any]) -> OpenAISurface:
        return _CHAT if "messages" in body else self.prompt


class Tokenize(TextOrMessages):
    """`POST /tokenize`: a `prompt` or `messages` in, the token ids out."""

    name = "tokenize"
    prompt = Completions()
    tenant_fields = False


class Pooling(TextOrMessages):
    """`POST /pooling`: the pooler's raw output for an `input` or `messages`."""

    name = "pooling"
    prompt = Embeddings()


class Classify(TextOrMessages):
    """`POST /classify`: class probabilities for an `input` or `messages`."""

    name = "classify"
    prompt = Embeddings()


class Detokenize(VllmExtra):
    """`POST /detokenize`: token ids in, their text out; no text for a policy to read."""

    name = "detokenize"
    tenant_fields = False

    def check_body(self, body: dict[str, Any]) -> None:
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(token, int) and not isinstance(token, bool) for token in tokens
        ):
            raise wrong_type("tokens", "an array of token ids", tokens)

    def texts(self, request: InferenceRequest) -> RequestTexts:
        return RequestTexts("tokens")

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        return len(request.body["tokens"])


class Scoring(VllmExtra):
    """Pairs of texts scored by a cross-encoder (or an embedding model): each text of the
    first side is paired with each of the second when the first is one, else pairwise."""

    pair_fields: ClassVar[tuple[tuple[str, str], ...]]

    def check_body(self, body: dict[str, Any]) -> None:
        first, second = self._pair(body)
        for field in (first, second):
            if not _is_score_input(body[field]):
                raise BadRequest(
                    f"Invalid '{field}': expected a string, an object with 'content', or an "
                    "array of them.",
                    field,
                )

    def texts(self, request: InferenceRequest) -> RequestTexts:
        texts = RequestTexts(self._pair(request.body)[0])
        for field in self._pair(request.body):
            _score_slots(request.body, field, field, texts)
        texts.messages = len(texts.slots)
        return texts

    def estimate_prompt_tokens(self, request: InferenceRequest) -> int:
        first, second = (_item_tokens(request.body[field]) for field in self._pair(request.body))
        if len(first) == 1:
            return first[0] * len(second) + sum(second)
        return sum(first) + sum(second)

    def _pair(self, body: dict[str, Any]) -> tuple[str, str]:
        for pair in self.pair_fields:
            if all(field in body for field in pair):
                return pair
        first, second = self.pair_fields[0]
        missing = first if first not in body else second
        raise BadRequest(f"Missing required parameter: '{missing}'.", missing)


class Rerank(Scoring):
    """`POST /rerank` (`/v1/rerank`, `/v2/rerank`): documents ranked against a query."""

    name = "rerank"
    pair_fields = (("query", "documents"),)


class Score(Scoring):
    """`POST /score` (`/v1/score`): the similarity of text pairs."""

    name = "score"
    pair_fields = (
        ("text_1", "text_2"),
        ("queries", "documents"),
        ("queries", "items"),
        ("data_1", "data_2"),
    )


def _is_score_input(value: Any) -> bool:
    """A string, a multimodal object (`{"content": [parts]}`), or a non-empty array of them."""
    if isinstance(value, str) or (
        isinstance(value, dict) and isinstance(value.get("content"), list)
    ):
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all(not isinstance(item, list) and _is_score_input(item) for item in value)
    )


def _score_slots(container: Any, key: str | int, param: str, texts: RequestTexts) -> None:
    """The texts of one score input: the string, or the text parts of its content."""
    value = container[key]
    if isinstance(value, str):
        texts.slots.append(TextSlot(container, key, PROMPT_ROLE, param))
    elif isinstance(value, list):
        for index in range(len(value)):
            _score_slots(value, index, f"{param}[{index}]", texts)
    else:
        for index, part in enumerate(value["content"]):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.slots.append(
                    TextSlot(part, "text", PROMPT_ROLE, f"{param}.content[{index}].text")
                )


def _item_tokens(value: Any) -> list[int]:
    """The estimate of each item of one side of the pairs."""
    items = value if isinstance(value, list) else [value]
    return [
        1 + text_tokens(content_chars(item if isinstance(item, str) else item["content"]))
        for item in items
    ]
