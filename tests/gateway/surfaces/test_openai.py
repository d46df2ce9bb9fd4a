import orjson
import pytest

from gateway.core.errors import GatewayError
from gateway.core.request import InferenceRequest
from gateway.surfaces import ChatCompletions, Completions, Embeddings, Surface

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}


CHAT_SURFACE = ChatCompletions()


def parse(surface: Surface, body: object) -> InferenceRequest:
    return surface.parse(orjson.dumps(body))


def rejected(surface: Surface, raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        surface.parse(raw)
    assert caught.value.status == 400
    return caught.value


def test_valid_chat_is_read_without_copying_the_bytes() -> None:
    raw = orjson.dumps(CHAT)
    request = CHAT_SURFACE.parse(raw)
    assert (request.model, request.stream, request.client_wants_usage) == ("base", False, False)
    assert CHAT_SURFACE.upstream_body(request, None) is raw


def test_stream_forces_include_usage_and_remembers_what_the_client_asked() -> None:
    request = parse(CHAT_SURFACE, {**CHAT, "stream": True, "stream_options": {"x": 1}})
    assert request.client_wants_usage is False
    assert orjson.loads(CHAT_SURFACE.upstream_body(request, None))["stream_options"] == {
        "x": 1,
        "include_usage": True,
    }
    asked = parse(CHAT_SURFACE, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert asked.client_wants_usage is True


@pytest.mark.parametrize(
    ("surface", "body", "param"),
    [
        (CHAT_SURFACE, {"model": "base"}, "messages"),
        (CHAT_SURFACE, {"messages": "hi"}, "messages"),
        (CHAT_SURFACE, {"messages": []}, "messages"),
        (CHAT_SURFACE, {"messages": ["hi"]}, "messages[0]"),
        (CHAT_SURFACE, {"messages": [{"content": "hi"}]}, "messages[0].role"),
        (CHAT_SURFACE, {**CHAT, "model": 3}, "model"),
        (CHAT_SURFACE, {**CHAT, "stream": "yes"}, "stream"),
        (CHAT_SURFACE, {**CHAT, "max_tokens": "10"}, "max_tokens"),
        (CHAT_SURFACE, {**CHAT, "max_tokens": True}, "max_tokens"),
        (CHAT_SURFACE, {**CHAT, "temperature": "hot"}, "temperature"),
        (CHAT_SURFACE, {**CHAT, "stream_options": []}, "stream_options"),
        (
            CHAT_SURFACE,
            {**CHAT, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        (Completions(), {"model": "base"}, "prompt"),
        (Completions(), {"prompt": 5}, "prompt"),
        (Completions(), {"prompt": ["a", 1]}, "prompt"),
        (Completions(), {"prompt": [[1, 2], []]}, "prompt"),
        (Embeddings(), {"model": "base"}, "input"),
        (Embeddings(), {"input": "x", "stream": True}, "stream"),
    ],
)
def test_bad_fields_name_their_param(surface: Surface, body: dict, param: str) -> None:
    assert rejected(surface, orjson.dumps(body)).param == param


@pytest.mark.parametrize("prompt", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_completion_prompts_of_every_shape_pass(prompt: object) -> None:
    assert parse(Completions(), {"prompt": prompt}).model is None


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"", b"null"])
def test_malformed_bodies_are_400(raw: bytes) -> None:
    assert rejected(CHAT_SURFACE, raw).type == "invalid_request_error"


def test_a_body_too_deep_to_forward_is_400_not_500() -> None:
    """orjson reads 1024 levels but writes 255: a changed body that deep cannot be sent on."""
    raw = orjson.dumps({"model": "base", "messages": [{"role": "user", "content": "x"}]})
    nested = b"[" * 300 + b"1" + b"]" * 300
    request = CHAT_SURFACE.parse(raw[:-1] + b',"extra":' + nested + b"}")
    request.changed = True
    with pytest.raises(GatewayError) as caught:
        CHAT_SURFACE.upstream_body(request, "other-model")
    assert caught.value.status == 400
