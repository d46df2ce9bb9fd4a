"""Ask a model whether an input is safe: a chat model served by vLLM (any model, or a LoRA
"guard" adapter) with a prompt template and a verdict regex (RE2: see operator_regex), or an
OpenAI-compatible `/v1/moderations` endpoint.

Off the hot path unless a policy has a guard: its connection pool (an `HttpTransport` of its
own) is opened on the first call.
Greedy decoding (temperature 0) makes the verdict for a given text repeatable. Any failure
(timeout, connection, HTTP error, an answer of the wrong shape) raises `GuardUnavailable`;
whether that blocks or allows is the policy's `fail_open` choice, made by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.errors import UpstreamError, UpstreamTimeout
from gateway.safety.operator_regex import compile_regex
from gateway.safety.policy import GuardSpec
from gateway.settings import UpstreamSettings
from gateway.upstream.base import Transport, UpstreamRequest
from gateway.upstream.http import HttpTransport

GUARD_CONNECTIONS = 100  # guard calls in flight at once, per process


class GuardUnavailable(Exception):
    """The guard gave no verdict; the message says why (no content in it)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    unsafe: bool
    reason: str  # moderation categories, or "" for a chat guard


class GuardSessions:
    """One connection pool for every guard of the process, opened when first needed."""

    def __init__(self) -> None:
        self._transport: HttpTransport | None = None

    async def transport(self) -> Transport:
        if self._transport is None:
            transport = HttpTransport(UpstreamSettings(), GUARD_CONNECTIONS)
            await transport.start()
            self._transport = transport
        return self._transport

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None


class GuardModel:
    def __init__(
        self,
        spec: GuardSpec,
        sessions: GuardSessions,
        default_url: str | None,
        default_api_key: str | None,
    ) -> None:
        url = str(spec.url) if spec.url is not None else default_url
        if url is None:
            raise ValueError("the guard has no url and the gateway has no upstream url")
        self.spec = spec
        self._sessions = sessions
        path = "/v1/chat/completions" if spec.kind == "chat" else "/v1/moderations"
        self._url = url.rstrip("/") + path
        api_key = spec.api_key if spec.api_key is not None else default_api_key
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._unsafe = compile_regex(spec.unsafe_pattern, case_sensitive=False)

    async def verdict(self, text: str) -> Verdict:
        answer = await self._post(self._request_body(text))
        try:
            if self.spec.kind == "chat":
                content = answer["choices"][0]["message"]["content"] or ""
                return Verdict(self._unsafe.search(content) is not None, "")
            return _moderation_verdict(answer["results"])
        except (KeyError, IndexError, TypeError) as error:
            raise GuardUnavailable(f"unexpected answer shape ({error!r})") from None

    def _request_body(self, text: str) -> dict[str, Any]:
        spec = self.spec
        if spec.kind == "moderations":
            return {"model": spec.model, "input": text}
        messages = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
        # str.replace, not format: the text may hold braces of its own.
        messages.append({"role": "user", "content": spec.prompt_template.replace("{text}", text)})
        return {
            "model": spec.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": spec.max_tokens,
            "stream": False,
        }

    async def _post(self, body: dict[str, Any]) -> Any:
        transport = await self._sessions.transport()
        request = UpstreamRequest(
            "POST", self._url, orjson.dumps(body), self._headers, timeout_s=self.spec.timeout_s
        )
        try:
            response = await transport.send(request)
            try:
                if response.status != 200:
                    raise GuardUnavailable(f"HTTP {response.status}")
                return orjson.loads(await response.read())
            finally:
                response.release()
        except UpstreamTimeout:
            raise GuardUnavailable(f"no answer within {self.spec.timeout_s:g}s") from None
        except (UpstreamError, orjson.JSONDecodeError) as error:
            raise GuardUnavailable(type(error).__name__) from None


def _moderation_verdict(results: list[dict[str, Any]]) -> Verdict:
    flagged = [result for result in results if result["flagged"]]
    categories = sorted(
        {name for result in flagged for name, on in (result.get("categories") or {}).items() if on}
    )
    return Verdict(bool(flagged), ", ".join(categories))
