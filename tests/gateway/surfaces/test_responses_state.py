"""The Responses API's state kept by the gateway, end to end in this process: stored
responses (GET, DELETE, input_items), conversations continued with previous_response_id,
background responses (queued, polled, streamed again, cancelled), retention, and what a
client sees when the store is off or failing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.core.errors import StoreUnavailable
from gateway.responses.redis_store import RedisResponseStore
from gateway.responses.sqlite_store import SqliteResponseStore
from gateway.responses.store import StoredResponse
from gateway.surfaces.responses_state import STALE_S, KeptResponse, presented
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.memory import MemoryResponse
from tests.fixtures.gateway import ADMIN_KEY, Gateway
from tests.fixtures.in_process import FakeVllm, in_process_gateway
from tests.fixtures.processes import free_port
from tests.gateway.safety.helpers import rule
from tests.gateway.surfaces.test_responses import (
    ASSISTANT,
    USAGE,
    frame,
    message,
    new_key,
    parse_stream,
    response_object,
    streamed_text,
    vllm_stream,
)

BODY = {"model": "assistant", "input": "hi"}


def vllm_like(event: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """vLLM's response objects carry the request's id and echo these fields."""
    response = event.get("response", event)
    if response.get("object") == "response" or "response" in event:
        response["id"] = body.get("request_id", "resp_vllm")
        response["previous_response_id"] = body.get("previous_response_id")
        response["background"] = body.get("background", False)
    return event


async def paced(chunks: list[bytes], pause_s: float) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(pause_s)
        yield chunk


class Vllm(FakeVllm):
    """Answers /v1/responses as vLLM does, with the text `text` (streamed in `pieces`, one
    every `pause_s`); keeps the bodies it got."""

    def __init__(self, text: str = "Hello there", pause_s: float = 0.0) -> None:
        super().__init__()
        self.text, self.pause_s = text, pause_s
        self.bodies: list[dict[str, Any]] = []
        self.routes["/v1/responses"] = self._responses

    async def _responses(self, request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        self.bodies.append(body)
        if not body.get("stream"):
            answer = response_object("completed", [message(self.text)], USAGE, body["model"])
            return MemoryResponse(200, orjson.dumps(vllm_like(answer, body)))
        events = vllm_stream(self.text.split(" "), body["model"])
        chunks = [frame(vllm_like(orjson.loads(e.split(b"data: ", 1)[1]), body)) for e in events]
        source = paced(chunks, self.pause_s) if self.pause_s else chunks
        return MemoryResponse(200, chunks=source, content_type="text/event-stream")


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def poll(client: httpx.AsyncClient, path: str, key: str, until: set[str]) -> Any:
    for _ in range(200):
        answer = (await client.get(path, headers=auth(key))).json()
        if answer["status"] in until:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {until}: {answer}")


async def test_a_response_is_stored_and_read_back(tmp_path: Path) -> None:
    vllm = Vllm()
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        created = await client.post("/v1/responses", json=BODY, headers=auth(key))
        response_id = created.json()["id"]
        read = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
    assert created.status_code == read.status_code == 200
    assert read.json() == created.json()
    assert read.json()["model"] == "assistant"
    sent = vllm.bodies[0]
    assert sent["store"] is False  # vLLM's own store never holds a tenant's answer
    assert sent["request_id"] == response_id and response_id.startswith("resp_")


async def test_a_streamed_response_is_stored_before_its_end_event_leaves(tmp_path: Path) -> None:
    vllm = Vllm()
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        async with client.stream(
            "POST", "/v1/responses", json={**BODY, "stream": True}, headers=auth(key)
        ) as stream:
            data = b""
            async for chunk in stream.aiter_bytes():
                data += chunk
                if b"response.completed" in data:
                    # the client has seen the end: the response is there, on any instance
                    response_id = parse_stream(data)[-1]["response"]["id"]
                    read = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
                    assert read.status_code == 200
        events = parse_stream(data)
    assert streamed_text(events) == "Hellothere"
    assert read.json() == events[-1]["response"]
    assert read.json()["status"] == "completed"


async def test_a_conversation_continues_from_the_stored_response(tmp_path: Path) -> None:
    vllm = Vllm("rivers flow")
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        first = await client.post(
            "/v1/responses", json={**BODY, "instructions": "be brief"}, headers=auth(key)
        )
        first_id = first.json()["id"]
        second = await client.post(
            "/v1/responses",
            json={"model": "assistant", "input": "more", "previous_response_id": first_id},
            headers=auth(key),
        )
        third = await client.post(
            "/v1/responses",
            json={
                "model": "assistant",
                "input": [{"role": "user", "content": "and?"}],
                "previous_response_id": second.json()["id"],
                "stream": True,
            },
            headers=auth(key),
        )
        items = await client.get(
            f"/v1/responses/{second.json()['id']}/input_items?order=asc", headers=auth(key)
        )
    assert second.status_code == 200, second.text
    assert second.json()["previous_response_id"] == first_id
    continued = vllm.bodies[1]
    assert "previous_response_id" not in continued
    assert "instructions" not in continued  # as OpenAI: a new turn brings its own
    assert [item.get("role") for item in continued["input"]] == ["user", "assistant", "user"]
    assert continued["input"][0]["content"] == "hi"
    assert continued["input"][1]["content"][0]["text"] == "rivers flow"
    assert continued["input"][2]["content"] == "more"
    assert len(vllm.bodies[2]["input"]) == 5
    assert (
        parse_stream(third.content)[-1]["response"]["previous_response_id"] == (second.json()["id"])
    )
    listed = items.json()
    assert [item["type"] for item in listed["data"]] == ["message"] * 3
    assert listed["data"][0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert listed["data"][1]["role"] == "assistant"
    assert listed["has_more"] is False and listed["first_id"] == listed["data"][0]["id"]


async def test_input_items_are_paged_newest_first(tmp_path: Path) -> None:
    vllm = Vllm()
    inputs = [{"role": "user", "content": f"turn {n}"} for n in range(5)]
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        created = await client.post(
            "/v1/responses", json={"model": "assistant", "input": inputs}, headers=auth(key)
        )
        path = f"/v1/responses/{created.json()['id']}/input_items"
        first = (await client.get(f"{path}?limit=2", headers=auth(key))).json()
        rest = (
            await client.get(f"{path}?limit=10&after={first['last_id']}", headers=auth(key))
        ).json()
        bad = [
            await client.get(f"{path}?{query}", headers=auth(key))
            for query in ("limit=0", "limit=x", "order=up", "after=nope")
        ]
    assert [item["content"][0]["text"] for item in first["data"]] == ["turn 4", "turn 3"]
    assert first["has_more"] is True
    assert [item["content"][0]["text"] for item in rest["data"]] == ["turn 2", "turn 1", "turn 0"]
    assert rest["has_more"] is False
    assert [answer.status_code for answer in bad] == [400] * 4
    assert [answer.json()["error"]["param"] for answer in bad] == [
        "limit",
        "limit",
        "order",
        "after",
    ]


async def test_another_tenants_response_is_an_unknown_one(tmp_path: Path) -> None:
    vllm = Vllm()
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        mine = (await client.post("/v1/responses", json=BODY, headers=auth(key))).json()["id"]
        other = await new_key(client, ASSISTANT)
        answers = [
            await client.get(f"/v1/responses/{mine}", headers=other),
            await client.get(f"/v1/responses/{mine}/input_items", headers=other),
            await client.delete(f"/v1/responses/{mine}", headers=other),
            await client.post(f"/v1/responses/{mine}/cancel", headers=other),
            await client.post(
                "/v1/responses", json={**BODY, "previous_response_id": mine}, headers=other
            ),
        ]
        unknown = await client.get("/v1/responses/resp_unknown", headers=auth(key))
        still_mine = await client.get(f"/v1/responses/{mine}", headers=auth(key))
    assert [answer.status_code for answer in answers] == [404] * 5
    message = answers[0].json()["error"]["message"]
    assert message == f"Response with id '{mine}' not found."
    assert unknown.json()["error"] == {
        **answers[0].json()["error"],
        "message": message.replace(mine, "resp_unknown"),
    }
    assert answers[4].json()["error"]["param"] == "previous_response_id"
    assert still_mine.status_code == 200


async def test_a_deleted_response_is_gone(tmp_path: Path) -> None:
    async with in_process_gateway(Vllm(), tmp_path, ASSISTANT) as (client, key):
        response_id = (await client.post("/v1/responses", json=BODY, headers=auth(key))).json()[
            "id"
        ]
        deleted = await client.delete(f"/v1/responses/{response_id}", headers=auth(key))
        read = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
        again = await client.delete(f"/v1/responses/{response_id}", headers=auth(key))
    assert deleted.json() == {"id": response_id, "object": "response", "deleted": True}
    assert read.status_code == again.status_code == 404


async def test_store_false_keeps_nothing_and_sends_the_body_as_it_came(tmp_path: Path) -> None:
    vllm = Vllm()
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        created = await client.post(
            "/v1/responses", json={**BODY, "store": False}, headers=auth(key)
        )
        read = await client.get(f"/v1/responses/{created.json()['id']}", headers=auth(key))
    assert created.status_code == 200 and read.status_code == 404
    assert "request_id" not in vllm.bodies[0] and vllm.bodies[0]["store"] is False


async def test_a_response_past_its_retention_is_gone(tmp_path: Path) -> None:
    async with in_process_gateway(Vllm(), tmp_path, ASSISTANT, responses={"retention_s": 0.3}) as (
        client,
        key,
    ):
        response_id = (await client.post("/v1/responses", json=BODY, headers=auth(key))).json()[
            "id"
        ]
        fresh = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
        await asyncio.sleep(0.4)
        expired = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
    assert fresh.status_code == 200 and expired.status_code == 404


async def test_with_the_store_off_state_needing_requests_are_400(tmp_path: Path) -> None:
    vllm = Vllm()
    async with in_process_gateway(vllm, tmp_path, ASSISTANT, responses={"store": False}) as (
        client,
        key,
    ):
        served = await client.post("/v1/responses", json=BODY, headers=auth(key))
        read = await client.get(f"/v1/responses/{served.json()['id']}", headers=auth(key))
        refused = [
            await client.post("/v1/responses", json={**BODY, field: value}, headers=auth(key))
            for field, value in (("previous_response_id", "resp_1"), ("background", True))
        ]
    assert served.status_code == 200 and read.status_code == 404
    assert [answer.status_code for answer in refused] == [400, 400]
    assert [answer.json()["error"]["param"] for answer in refused] == [
        "previous_response_id",
        "background",
    ]
    assert len(vllm.bodies) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("store", "yes"),
        ("background", 1),
        ("previous_response_id", 7),
        ("previous_response_id", ""),
    ],
)
async def test_bad_state_fields_are_400_naming_them(tmp_path: Path, field: str, value: Any) -> None:
    async with in_process_gateway(Vllm(), tmp_path, ASSISTANT) as (client, key):
        answer = await client.post("/v1/responses", json={**BODY, field: value}, headers=auth(key))
        both = await client.post(
            "/v1/responses", json={**BODY, "background": True, "store": False}, headers=auth(key)
        )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == field
    assert both.status_code == 400 and both.json()["error"]["param"] == "background"


async def test_unknown_routes_and_methods_under_responses(tmp_path: Path) -> None:
    async with in_process_gateway(Vllm(), tmp_path, ASSISTANT) as (client, key):
        response_id = (await client.post("/v1/responses", json=BODY, headers=auth(key))).json()[
            "id"
        ]
        answers = [
            await client.put(f"/v1/responses/{response_id}", headers=auth(key)),
            await client.get(f"/v1/responses/{response_id}/cancel", headers=auth(key)),
            await client.get(f"/v1/responses/{response_id}/nothing", headers=auth(key)),
            await client.get(f"/v1/responses/{response_id}"),
            await client.get(f"/v1/responses/{response_id}?stream=true", headers=auth(key)),
            await client.post(f"/v1/responses/{response_id}/cancel", headers=auth(key)),
        ]
    assert [answer.status_code for answer in answers] == [405, 405, 404, 401, 400, 400]
    assert all("error" in answer.json() for answer in answers)


# --- background responses ----------------------------------------------------------------


async def test_a_background_response_is_queued_then_completes(tmp_path: Path) -> None:
    vllm = Vllm(pause_s=0.02)
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        queued = await client.post(
            "/v1/responses", json={**BODY, "background": True}, headers=auth(key)
        )
        response_id = queued.json()["id"]
        done = await poll(client, f"/v1/responses/{response_id}", key, {"completed"})
        replay = await client.get(
            f"/v1/responses/{response_id}?stream=true&starting_after=3", headers=auth(key)
        )
    assert queued.status_code == 200
    assert queued.json()["status"] == "queued" and queued.json()["background"] is True
    assert queued.json()["model"] == "assistant"
    assert done["background"] is True and done["model"] == "assistant"
    assert done["output"][0]["content"][0]["text"] == "Hellothere"
    assert vllm.bodies[0]["stream"] is True and "background" not in vllm.bodies[0]
    events = parse_stream(replay.content)
    assert [event["sequence_number"] for event in events] == list(range(4, 4 + len(events)))
    assert events[-1]["type"] == "response.completed"


async def test_a_background_stream_is_served_from_the_store(tmp_path: Path) -> None:
    vllm = Vllm(pause_s=0.02)
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        streamed = await client.post(
            "/v1/responses",
            json={**BODY, "background": True, "stream": True},
            headers=auth(key),
        )
    events = parse_stream(streamed.content)
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert streamed_text(events) == "Hellothere"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[-1]["response"]["background"] is True


async def test_a_cancelled_background_response_stops_vllm(tmp_path: Path) -> None:
    vllm = Vllm(" ".join(f"w{n}" for n in range(200)), pause_s=0.05)
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        queued = await client.post(
            "/v1/responses", json={**BODY, "background": True}, headers=auth(key)
        )
        response_id = queued.json()["id"]
        await asyncio.sleep(0.2)
        running = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
        cancelled = await client.post(f"/v1/responses/{response_id}/cancel", headers=auth(key))
        await asyncio.sleep(1.5)  # the runner looks once a second
        after = await client.get(f"/v1/responses/{response_id}", headers=auth(key))
        events = await client.get(f"/v1/responses/{response_id}?stream=true", headers=auth(key))
        again = await client.post(f"/v1/responses/{response_id}/cancel", headers=auth(key))
    assert running.json()["status"] == "in_progress"
    assert cancelled.json()["status"] == "cancelled"
    assert after.json()["status"] == "cancelled" and again.json()["status"] == "cancelled"
    streamed = parse_stream(events.content)
    assert len(streamed) < 100  # vLLM was stopped long before its 200 words
    assert not any(event["type"] == "response.completed" for event in streamed)


async def test_a_background_response_that_vllm_refuses_is_failed(tmp_path: Path) -> None:
    async def refused(request: UpstreamRequest, body: dict[str, Any]) -> MemoryResponse:
        error = {"message": "bad input", "type": "BadRequestError", "param": "input", "code": 400}
        return MemoryResponse(400, orjson.dumps({"error": error}))

    vllm = Vllm()
    vllm.routes["/v1/responses"] = refused
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        queued = await client.post(
            "/v1/responses", json={**BODY, "background": True}, headers=auth(key)
        )
        failed = await poll(client, f"/v1/responses/{queued.json()['id']}", key, {"failed"})
    assert queued.status_code == 200
    assert failed["error"]["message"] == "bad input"


def test_a_background_response_whose_runner_went_silent_is_failed() -> None:
    response = {"id": "resp_1", "object": "response", "status": "in_progress"}
    alive = StoredResponse("t", response, [], time.time() + 60, time.time())
    silent = StoredResponse("t", response, [], time.time() + 60, time.time() - STALE_S - 1)
    assert presented(alive) is response
    assert presented(silent)["status"] == "failed"
    assert presented(silent)["error"]["code"] == "server_error"


async def test_a_response_that_cannot_be_stored_still_reaches_the_client() -> None:
    store = RedisResponseStore(f"redis://127.0.0.1:{free_port()}", budget_s=0.3)
    record = StoredResponse("t", {"id": "resp_1"}, [], time.time() + 60)
    kept = KeptResponse(store, record, None, background=False)
    response = {"id": "resp_1", "status": "completed", "usage": USAGE}
    end = frame({"type": "response.completed", "response": response})
    assert kept.on_events(b"event: x\ndata: {}\n\n" + end) == b"event: x\ndata: {}\n\n"
    assert await kept.release() == end
    with pytest.raises(StoreUnavailable):
        await store.get("t", "resp_1")
    await store.close()


# --- a gateway process in front of the stand-in, through the openai SDK --------------------


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.api_key, max_retries=0)


def test_the_sdk_retrieves_continues_lists_and_deletes(gateway: Gateway) -> None:
    client = sdk(gateway)
    first = client.responses.create(model="tenant-a", input="tell me", max_output_tokens=8)
    read = client.responses.retrieve(first.id)
    assert read.id == first.id and read.output_text == first.output_text
    assert read.model == "tenant-a"
    second = client.responses.create(
        model="tenant-a", input="more", previous_response_id=first.id, max_output_tokens=8
    )
    assert second.previous_response_id == first.id
    items = client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in items.data] == ["message"] * 3
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="tenant-a", input="x", previous_response_id=first.id)


def test_the_sdk_polls_a_background_response(gateway: Gateway) -> None:
    client = sdk(gateway)
    queued = client.responses.create(
        model="tenant-a", input="tell me", max_output_tokens=8, background=True
    )
    assert queued.status == "queued"
    deadline = time.monotonic() + 20
    while (read := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert read.status in ("completed", "incomplete") and read.output_text
    with client.responses.retrieve(queued.id, stream=True, starting_after=2) as stream:
        events = list(stream)
    assert events[0].sequence_number == 3
    assert events[-1].type in ("response.completed", "response.incomplete")


async def test_a_background_run_cut_by_shutdown_is_stored_as_failed(tmp_path: Path) -> None:
    vllm = Vllm(" ".join(f"w{n}" for n in range(200)), pause_s=0.05)
    async with in_process_gateway(vllm, tmp_path, ASSISTANT) as (client, key):
        queued = await client.post(
            "/v1/responses", json={**BODY, "background": True}, headers=auth(key)
        )
        tenants = await client.get(
            "/admin/v1/tenants", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        await asyncio.sleep(0.2)
    store = SqliteResponseStore(tmp_path / "gateway.db")
    stored = await store.get(tenants.json()["items"][0]["id"], queued.json()["id"])
    await store.close()
    assert stored is not None and stored.status == "failed"
    assert stored.response["error"]["message"] == "The gateway stopped before the response ended."


async def test_the_input_policy_reads_the_whole_conversation_and_what_is_stored(
    tmp_path: Path,
) -> None:
    vllm = Vllm("write to x@y.com")
    policies = {"no-mail": {"rules": [rule("mails", "email", "redact", "input")]}}
    async with in_process_gateway(vllm, tmp_path, ASSISTANT, safety={"policies": policies}) as (
        client,
        _,
    ):
        headers = await new_key(client, ASSISTANT, policy="no-mail")
        first = await client.post(
            "/v1/responses", json={**BODY, "input": "mail a@b.com"}, headers=headers
        )
        items = await client.get(f"/v1/responses/{first.json()['id']}/input_items", headers=headers)
        await client.post(
            "/v1/responses",
            json={**BODY, "input": "again", "previous_response_id": first.json()["id"]},
            headers=headers,
        )
    assert "a@b.com" not in items.text  # stored as the policy left it
    continued = json.dumps(vllm.bodies[1]["input"])
    assert "a@b.com" not in continued and "x@y.com" not in continued  # history checked again
    assert "again" in continued
