"""`GET /v1/models` and `GET /v1/models/{id}`: the caller's public model names.

With authentication on, a caller sees only its tenant's names (narrowed by the key's allowed
models): other tenants' models and vLLM's raw adapter names stay invisible. With it off, the
upstream's own list is relayed.
"""

from __future__ import annotations

import orjson

from gateway.core.asgi import Receive, Scope, Send, send_response
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.pipeline.tenant_policy import model_not_found
from gateway.routing import Router
from gateway.tenancy.auth import KeyAuthenticator, Principal, presented_key
from gateway.upstream.client import UpstreamClient, as_openai_error

MODELS_PREFIX = "/v1/models/"


class ModelsApi:
    def __init__(
        self,
        authenticator: KeyAuthenticator | None,
        upstream: UpstreamClient,
        router: Router,
    ) -> None:
        self._authenticator = authenticator
        self._upstream = upstream
        self._router = router

    async def list(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        if self._authenticator is None:
            body = await self._fetch_upstream(ctx)
        else:
            principal = await self._authenticator.authenticate(presented_key(scope))
            body = orjson.dumps({"object": "list", "data": _cards(principal)})
        await send_response(send, 200, body, ctx.response_headers())

    async def retrieve(
        self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        model_id = scope["path"][len(MODELS_PREFIX) :]
        if self._authenticator is None:
            cards = orjson.loads(await self._fetch_upstream(ctx)).get("data", [])
        else:
            cards = _cards(await self._authenticator.authenticate(presented_key(scope)))
        for card in cards:
            if card.get("id") == model_id:
                await send_response(send, 200, orjson.dumps(card), ctx.response_headers())
                return
        raise model_not_found(model_id)

    async def _fetch_upstream(self, ctx: RequestContext) -> bytes:
        replica = self._router.replicas[0]
        response = await self._upstream.get(ctx, replica.url + "/v1/models")
        try:
            body = await self._upstream.read(ctx, response)
        finally:
            response.release()
        if response.status != 200:
            raise as_openai_error(response.status, body) or GatewayError(
                response.status, "The model server could not list its models.", "upstream_error"
            )
        return body


def _cards(principal: Principal) -> list[dict[str, object]]:
    created = int(principal.tenant.created_at)
    owner = principal.tenant.name
    return [
        {"id": name, "object": "model", "created": created, "owned_by": owner}
        for name in principal.models
    ]
