"""The Responses API's routes on stored responses: `GET /v1/responses/{id}` (with
`stream=true&starting_after=N` for a background one), `DELETE /v1/responses/{id}`,
`POST /v1/responses/{id}/cancel` and `GET /v1/responses/{id}/input_items`.

All of them are the gateway's own (gateway/surfaces/responses_state.py keeps the responses):
vLLM is never asked. A caller sees only its tenant's responses; another tenant's id is the
same 404 as an unknown one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from gateway.core.asgi import Receive, Scope, Send, send_response
from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest, MethodNotAllowed, NotFoundError
from gateway.responses.store import StoredResponse
from gateway.surfaces.responses_state import ResponseKeeper, presented, stream_stored
from gateway.tenancy.auth import KeyAuthenticator, presented_key

RESPONSES_PREFIX = "/v1/responses/"
MAX_ITEMS_PAGE = 100
DEFAULT_ITEMS_PAGE = 20


class ResponsesApi:
    def __init__(self, authenticator: KeyAuthenticator | None, keeper: ResponseKeeper) -> None:
        self._authenticator = authenticator
        self._keeper = keeper

    async def __call__(
        self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response_id, _, action = scope["path"][len(RESPONSES_PREFIX) :].partition("/")
        method = scope["method"]
        allowed = {"": ("GET", "DELETE"), "cancel": ("POST",), "input_items": ("GET",)}
        if not response_id or action not in allowed:
            raise NotFoundError(f"Unknown route: {method} {scope['path']}", "unknown_url")
        if method not in allowed[action]:
            raise MethodNotAllowed(f"Method {method} is not allowed on {scope['path']}.")
        tenant_id = ""
        if self._authenticator is not None:
            principal = await self._authenticator.authenticate(presented_key(scope))
            tenant_id = principal.tenant.id
            ctx.tenant_id, ctx.key_id = tenant_id, principal.key.id
        record = await self._keeper.get(tenant_id, response_id, None)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        headers = ctx.response_headers()
        if action == "input_items":
            body = _input_items_page(record, query)
        elif method == "DELETE":
            await self._delete(record)
            body = {"id": record.id, "object": "response", "deleted": True}
        elif action == "cancel":
            body = await self._cancel(record)
        elif _flag(query, "stream"):
            if not record.response.get("background"):
                raise BadRequest("Only background responses can be streamed again.", "stream")
            after = _integer(query, "starting_after", -1)
            await stream_stored(self._keeper, record, after, headers, send)
            return
        else:
            body = presented(record)
        ctx.status = 200
        await send_response(send, 200, orjson.dumps(body), headers)

    async def _delete(self, record: StoredResponse) -> None:
        assert self._keeper.store is not None
        if not await self._keeper.store.delete(record.tenant_id, record.id):
            raise NotFoundError(f"Response with id '{record.id}' not found.", "response_not_found")

    async def _cancel(self, record: StoredResponse) -> dict[str, Any]:
        """A queued or running background response is cancelled (its runner, on whichever
        instance, sees it within a second and stops vLLM); a finished one is as it was."""
        store = self._keeper.store
        assert store is not None
        if not record.response.get("background"):
            raise BadRequest("Only responses created with background=true can be cancelled.")
        if record.running:
            record.response = {**record.response, "status": "cancelled"}
            record.heartbeat_at = None
            if not await store.put_if_running(record):  # it ended meanwhile
                record = await self._keeper.get(record.tenant_id, record.id, None)
        return presented(record)


def _input_items_page(record: StoredResponse, query: dict[str, list[str]]) -> dict[str, Any]:
    """A page of the input the response answered (earlier turns included), newest first by
    default, as OpenAI lists them."""
    order = _choice(query, "order", ("desc", "asc"))
    limit = _integer(query, "limit", DEFAULT_ITEMS_PAGE)
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise BadRequest(f"'limit' must be between 1 and {MAX_ITEMS_PAGE}.", "limit")
    items = [_listed(item, index, record.id) for index, item in enumerate(record.input_items)]
    if order == "desc":
        items.reverse()
    after = query.get("after", [None])[-1]
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise BadRequest(f"No input item with id '{after}'.", "after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def _listed(item: dict[str, Any], index: int, response_id: str) -> dict[str, Any]:
    """An input item in the listed shape: a type, an id, a message's content as parts."""
    listed = {"type": "message", **item}
    listed.setdefault("id", f"msg_{response_id.removeprefix('resp_')}_{index}")
    content = listed.get("content")
    if listed["type"] == "message" and isinstance(content, str):
        part = "output_text" if listed.get("role") == "assistant" else "input_text"
        listed["content"] = [{"type": part, "text": content}]
    return listed


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() == "true"


def _integer(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer.", name) from None


def _choice(query: dict[str, list[str]], name: str, choices: tuple[str, ...]) -> str:
    value = query.get(name, [choices[0]])[-1]
    if value not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}.", name)
    return value
