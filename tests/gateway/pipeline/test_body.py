import orjson
import pytest

from gateway.core.errors import GatewayError
from gateway.core.request import Endpoint
from gateway.pipeline.body import parse_request, upstream_body

CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}


def parse(endpoint: Endpoint, body: object) -> object:
    return parse_request(endpoint, orjson.dumps(body))


def rejected(endpoint: Endpoint, raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse_request(endpoint, raw)
    assert caught.value.status == 400
    return caught.value


def test_valid_chat_is_read_without_copying_the_bytes() -> None:
    raw = orjson.dumps(CHAT)
    request = parse_request(Endpoint.CHAT, raw)
    assert (request.model, request.stream, request.client_wants_usage) == ("base", False, False)
    assert upstream_body(request, None) is raw


def test_stream_forces_include_usage_and_remembers_what_the_client_asked() -> None:
    request = parse(Endpoint.CHAT, {**CHAT, "stream": True, "stream_options": {"x": 1}})
    assert request.client_wants_usage is False
    assert orjson.loads(upstream_body(request, None))["stream_options"] == {
        "x": 1,
        "include_usage": True,
    }
    asked = parse(
        Endpoint.CHAT, {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert asked.client_wants_usage is True


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        (Endpoint.CHAT, {"model": "base"}, "messages"),
        (Endpoint.CHAT, {"messages": "hi"}, "messages"),
        (Endpoint.CHAT, {"messages": []}, "messages"),
        (Endpoint.CHAT, {"messages": ["hi"]}, "messages[0]"),
        (Endpoint.CHAT, {"messages": [{"content": "hi"}]}, "messages[0].role"),
        (Endpoint.CHAT, {**CHAT, "model": 3}, "model"),
        (Endpoint.CHAT, {**CHAT, "stream": "yes"}, "stream"),
        (Endpoint.CHAT, {**CHAT, "max_tokens": "10"}, "max_tokens"),
        (Endpoint.CHAT, {**CHAT, "max_tokens": True}, "max_tokens"),
        (Endpoint.CHAT, {**CHAT, "temperature": "hot"}, "temperature"),
        (Endpoint.CHAT, {**CHAT, "stream_options": []}, "stream_options"),
        (
            Endpoint.CHAT,
            {**CHAT, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        (Endpoint.COMPLETIONS, {"model": "base"}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": 5}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": ["a", 1]}, "prompt"),
        (Endpoint.COMPLETIONS, {"prompt": [[1, 2], []]}, "prompt"),
        (Endpoint.EMBEDDINGS, {"model": "base"}, "input"),
        (Endpoint.EMBEDDINGS, {"input": "x", "stream": True}, "stream"),
    ],
)
def test_bad_fields_name_their_param(endpoint: Endpoint, body: dict, param: str) -> None:
    assert rejected(endpoint, orjson.dumps(body)).param == param


@pytest.mark.parametrize("prompt", ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_completion_prompts_of_every_shape_pass(prompt: object) -> None:
    assert parse(Endpoint.COMPLETIONS, {"prompt": prompt}).model is None


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"", b"null"])
def test_malformed_bodies_are_400(raw: bytes) -> None:
    assert rejected(Endpoint.CHAT, raw).type == "invalid_request_error"


def test_a_body_too_deep_to_forward_is_400_not_500() -> None:
    """orjson reads 1024 levels but writes 255: a changed body that deep cannot be sent on."""
    raw = orjson.dumps({"model": "base", "messages": [{"role": "user", "content": "x"}]})
    nested = b"[" * 300 + b"1" + b"]" * 300
    request = parse_request(Endpoint.CHAT, raw[:-1] + b',"extra":' + nested + b"}")
    request.changed = True
    with pytest.raises(GatewayError) as caught:
        upstream_body(request, "other-model")
    assert caught.value.status == 400
