"""`GET /v1/models` and `GET /v1/models/{id}`, answered from the upstream's model list."""

from __future__ import annotations

import orjson

from gateway.asgi import Receive, Scope, Send, send_response
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.routing import Router
from gateway.upstream.transport import UpstreamTransport, as_openai_error

MODELS_PREFIX = "/v1/models/"


class ModelsApi:
    def __init__(self, transport: UpstreamTransport, router: Router) -> None:
        self._transport = transport
        self._router = router

    async def list(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._fetch(ctx)
        await send_response(send, 200, body, ctx.response_headers())

    async def retrieve(
        self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        model_id = scope["path"][len(MODELS_PREFIX) :]
        for entry in orjson.loads(await self._fetch(ctx)).get("data", []):
            if entry.get("id") == model_id:
                await send_response(send, 200, orjson.dumps(entry), ctx.response_headers())
                return
        raise GatewayError(
            404, f"The model `{model_id}` does not exist.", param="model", code="model_not_found"
        )

    async def _fetch(self, ctx: RequestContext) -> bytes:
        replica = self._router.replicas[0]
        response = await self._transport.get(ctx, replica.url + "/v1/models")
        try:
            body = await self._transport.read(ctx, response)
        finally:
            response.release()
        if response.status != 200:
            raise as_openai_error(response.status, body) or GatewayError(
                response.status, "The model server could not list its models.", "upstream_error"
            )
        return body
