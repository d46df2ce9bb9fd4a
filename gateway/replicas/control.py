"""The gateway's control calls to vLLM: health, metrics, model list, adapter load/unload.

A connection pool of its own, apart from the inference transport: a health check or an
adapter load must not queue behind a thousand streams, and a replica that hangs on
inference should still fail its health check on time. vLLM's `--api-key` guards `/v1/*`
(the adapter routes included), so the upstream key goes along. Every call has one bound for
the whole of it; no control call streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gateway.core.errors import UpstreamError
from gateway.settings import UpstreamSettings
from gateway.upstream.base import Transport, UpstreamRequest
from gateway.upstream.http import HttpTransport

LOAD_PATH = "/v1/load_lora_adapter"
UNLOAD_PATH = "/v1/unload_lora_adapter"
CONTROL_CONNECTIONS = 64
# /metrics, /v1/models and unloads: a slow answer is late state, not a dead replica
READ_TIMEOUT_S = 10.0


class ReplicaUnreachable(Exception):
    """No HTTP answer: refused, reset, timed out or not HTTP."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def error_message(self) -> str:
        """vLLM's error message (`{"error": {"message"}}`), else the body as text."""
        try:
            error = orjson.loads(self.body).get("error")
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(message, str):
                return message
        except (orjson.JSONDecodeError, AttributeError):
            pass
        return self.body.decode(errors="replace").strip()[:500] or f"HTTP {self.status}"


@dataclass(frozen=True, slots=True)
class ServedModels:
    """`/v1/models` split into base models and adapters (name -> path vLLM loaded it from)."""

    base_models: frozenset[str]
    adapters: dict[str, str | None]


def control_pool() -> HttpTransport:
    """The control calls' own pool; each call sets its own timeout, so only the pool's size
    and keep-alive come from here."""
    return HttpTransport(UpstreamSettings(), CONTROL_CONNECTIONS)


class ReplicaClient:
    def __init__(
        self,
        transport: Transport,
        api_key: str | None,
        health_timeout_s: float,
        load_timeout_s: float,
    ) -> None:
        self._transport = transport
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._health_timeout_s = health_timeout_s
        self._load_timeout_s = load_timeout_s

    async def start(self) -> None:
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    async def healthy(self, url: str) -> bool:
        try:
            answer = await self._call("GET", url + "/health", timeout_s=self._health_timeout_s)
            return answer.status == 200
        except ReplicaUnreachable:
            return False

    async def metrics(self, url: str) -> str:
        answer = await self._call("GET", url + "/metrics")
        if answer.status != 200:
            raise ReplicaUnreachable(f"/metrics answered {answer.status}")
        return answer.body.decode(errors="replace")

    async def models(self, url: str) -> ServedModels:
        answer = await self._call("GET", url + "/v1/models")
        if answer.status != 200:
            raise ReplicaUnreachable(f"/v1/models answered {answer.status}")
        try:
            cards = orjson.loads(answer.body)["data"]
            base = frozenset(card["id"] for card in cards if not card.get("parent"))
            adapters = {card["id"]: card.get("root") for card in cards if card.get("parent")}
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            raise ReplicaUnreachable(f"/v1/models is not a model list ({error})") from None
        return ServedModels(base, adapters)

    async def load_adapter(self, url: str, name: str, path: str, in_place: bool) -> Answer:
        body: dict[str, object] = {"lora_name": name, "lora_path": path}
        if in_place:
            body["load_inplace"] = True
        return await self._call("POST", url + LOAD_PATH, body, self._load_timeout_s)

    async def unload_adapter(self, url: str, name: str) -> Answer:
        return await self._call("POST", url + UNLOAD_PATH, {"lora_name": name})

    async def _call(
        self,
        method: str,
        url: str,
        body: dict[str, object] | None = None,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> Answer:
        headers = dict(self._headers)
        if body is not None:
            headers["content-type"] = "application/json"
        data = orjson.dumps(body) if body is not None else None
        request = UpstreamRequest(method, url, data, headers, timeout_s=timeout_s)
        try:
            response = await self._transport.send(request)
            try:
                return Answer(response.status, await response.read())
            finally:
                response.release()
        except UpstreamError as error:
            raise ReplicaUnreachable(error.message) from None
