"""The API key in `x-api-key` (Anthropic's clients) as well as `Authorization: Bearer`, on
every route that takes one; the bearer token wins when both are sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.asgi import Scope
from gateway.core.errors import AuthenticationError
from gateway.tenancy.auth import presented_key
from tests.fixtures.in_process import FakeVllm, in_process_gateway
from tests.gateway.pipeline.test_in_process import chat, whole

CHAT = chat("base")


def scope(*headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "headers": list(headers)}


def test_the_key_comes_from_either_header_and_bearer_wins() -> None:
    assert presented_key(scope((b"authorization", b"Bearer sk-one"))) == "sk-one"
    assert presented_key(scope((b"authorization", b"bearer  sk-one "))) == "sk-one"
    assert presented_key(scope((b"x-api-key", b"sk-two"))) == "sk-two"
    both = scope((b"x-api-key", b"sk-two"), (b"authorization", b"Bearer sk-one"))
    assert presented_key(both) == "sk-one"
    # another scheme in Authorization (a proxy's): the x-api-key is the key
    basic = scope((b"authorization", b"Basic abc"), (b"x-api-key", b"sk-two"))
    assert presented_key(basic) == "sk-two"


@pytest.mark.parametrize(
    "headers",
    [(), ((b"authorization", b"Basic abc"),), ((b"x-api-key", b""),)],
    ids=["none", "not-bearer", "empty-x-api-key"],
)
def test_no_usable_header_is_a_401_naming_both(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    with pytest.raises(AuthenticationError) as caught:
        presented_key(scope(*headers))
    assert caught.value.status == 401
    assert "Authorization: Bearer sk-..." in caught.value.message
    assert "x-api-key: sk-..." in caught.value.message


async def test_x_api_key_works_on_inference_and_the_model_list(tmp_path: Path) -> None:
    fake = FakeVllm()
    fake.routes["/v1/chat/completions"] = whole
    async with in_process_gateway(fake, tmp_path) as (client, key):
        chat = await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": key})
        models = await client.get("/v1/models", headers={"x-api-key": key})
        model = await client.get("/v1/models/base", headers={"x-api-key": key})
        wrong_bearer = await client.post(
            "/v1/chat/completions",
            json=CHAT,
            headers={"authorization": "Bearer sk-wrong", "x-api-key": key},
        )
        right_bearer = await client.post(
            "/v1/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {key}", "x-api-key": "sk-wrong"},
        )
        missing = await client.get("/v1/models")
    assert chat.status_code == 200, chat.text
    assert {card["id"] for card in models.json()["data"]} >= {"base", "tenant-a"}
    assert model.json()["id"] == "base"
    assert wrong_bearer.status_code == 401  # Bearer wins
    assert right_bearer.status_code == 200
    assert missing.status_code == 401
    message = missing.json()["error"]["message"]
    assert "Authorization: Bearer" in message and "x-api-key" in message
