"""Load for the chaos scenarios: a few clients in closed loops, each request kept as an
`Outcome` labelled with the client's kind and the phase of the scenario it started in.

Every loop is bounded twice, by a count of requests and by a deadline, and every request by a
client timeout, so that a scenario ends whatever the gateway does; a request that hit the
client timeout shows up as such (`failure="TimeoutError"`, its elapsed time the timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

REQUEST_TIMEOUT_S = 30.0
# Between two requests of one client: the machine has 2 cores, shared with other work.
PAUSE_S = 0.05
OPENAI_ERROR_FIELDS = {"message", "type", "param", "code"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as its client saw it."""

    kind: str  # which client sent it: "cached key", "admin" ...
    phase: str  # the scenario's phase when it started
    started: float  # time.monotonic()
    elapsed_s: float
    status: int | None = None  # None: no HTTP answer at all
    code: str | None = None  # `error.code` of an error body
    openai_error: bool = False  # the body is {"error": {"message", "type", "param", "code"}}
    retry_after: str | None = None
    message: str = ""  # `error.message` of an error body
    failure: str | None = None  # the transport error that ended it (class name), if one did
    streamed: bool = False  # the answer was an event stream
    stream_error: bool = False  # its last event is `data: {"error": ...}`
    stream_done: bool = False  # its last event is `data: [DONE]`
    usage: tuple[int, int] | None = None  # prompt and completion tokens the client was shown

    @property
    def ended(self) -> float:
        return self.started + self.elapsed_s

    @property
    def label(self) -> str:
        """What happened, for counting: '200', '503 store_unavailable', '200 then
        ClientPayloadError', 'ClientConnectorError', '200 stream error event',
        '200 stream without [DONE]' ..."""
        if self.status is None:
            return self.failure or "no answer"
        label = f"{self.status} {self.code}" if self.code else str(self.status)
        if self.failure:
            return f"{label} then {self.failure}"
        if self.stream_error:
            return f"{label} stream error event"
        if self.streamed and not self.stream_done:
            return f"{label} stream without [DONE]"
        return label


class Phases:
    """The scenario's current phase, which each request reads as it starts."""

    def __init__(self, first: str) -> None:
        self.current = first
        self.entered = {first: time.monotonic()}

    def enter(self, name: str) -> None:
        self.current = name
        self.entered[name] = time.monotonic()

    def within(self, outcomes: Iterable[Outcome], first: str, until: str) -> list[Outcome]:
        """The outcomes of requests that started and ended between the moment phase `first`
        was entered and the moment phase `until` was: wholly inside that span."""
        start, end = self.entered[first], self.entered[until]
        return [
            outcome for outcome in outcomes if outcome.started >= start and outcome.ended <= end
        ]


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def chat_body(
    *, stream: bool = False, max_tokens: int = 4, include_usage: bool = False, prompt: str = "hi"
) -> dict[str, Any]:
    """A chat request for the public model `base`, generating exactly `max_tokens` tokens."""
    body: dict[str, Any] = {
        "model": "base",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


def client_session(connections: int = 64) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))


async def send(
    session: aiohttp.ClientSession,
    kind: str,
    phases: Phases,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    data: bytes | None = None,
) -> Outcome:
    """Send one request and read its whole answer (a stream to its end)."""
    phase, started = phases.current, time.monotonic()
    status: int | None = None
    retry_after: str | None = None
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=json_body,
            data=data,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        ) as response:
            status, retry_after = response.status, response.headers.get("retry-after")
            payload = await response.read()
            content_type = response.headers.get("content-type", "")
    except (aiohttp.ClientError, TimeoutError) as error:
        elapsed = time.monotonic() - started
        details: dict[str, Any] = {"retry_after": retry_after, "failure": type(error).__name__}
    else:
        elapsed = time.monotonic() - started
        if content_type.startswith("text/event-stream"):
            details = _stream_details(payload)
        else:
            details = _whole_details(retry_after, payload)
    return Outcome(kind, phase, started, elapsed, status, **details)


def _whole_details(retry_after: str | None, payload: bytes) -> dict[str, Any]:
    """The `Outcome` fields of a whole answer, beyond who sent it, when and its status."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return {"retry_after": retry_after}
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return {
            "code": None if code is None else str(code),
            "openai_error": set(error) == OPENAI_ERROR_FIELDS and bool(error.get("message")),
            "retry_after": retry_after,
            "message": str(error.get("message")),
        }
    return {"usage": _usage(body.get("usage"))}


def _stream_details(payload: bytes) -> dict[str, Any]:
    """The `Outcome` fields of an event stream, beyond who sent it, when and its status."""
    events = [event[6:] for event in sse_data(payload)]
    usage = None
    for event in events:
        if event.startswith(b"{") and b'"usage"' in event:
            usage = _usage(orjson.loads(event).get("usage")) or usage
    last = events[-1] if events else b""
    return {
        "streamed": True,
        "stream_error": last.startswith(b'{"error"'),
        "stream_done": last == b"[DONE]",
        "usage": usage,
    }


def sse_data(payload: bytes) -> list[bytes]:
    """The `data: ...` events of an event stream, in order."""
    events = payload.replace(b"\r\n", b"\n").split(b"\n\n")
    return [event.strip() for event in events if event.strip().startswith(b"data: ")]


def _usage(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    return usage["prompt_tokens"], usage["completion_tokens"]


Request = Callable[[], Coroutine[Any, Any, Outcome]]


def chat_request(
    session: aiohttp.ClientSession,
    kind: str,
    phases: Phases,
    gateway_url: str,
    secret: str,
    body: dict[str, Any],
) -> Request:
    """A chat completion with `body` to the gateway at `gateway_url`, with `secret` as its
    key, sent anew at each call."""
    url, headers = gateway_url + "/v1/chat/completions", bearer(secret)
    return lambda: send(session, kind, phases, "POST", url, headers=headers, json_body=body)


@asynccontextmanager
async def closed_loops(
    requests: Sequence[Request],
    outcomes: list[Outcome],
    *,
    max_per_client: int,
    max_s: float,
    pause_s: float = PAUSE_S,
) -> AsyncIterator[None]:
    """One client per entry of `requests`, each sending its request again and again (at most
    `max_per_client` times, for at most `max_s`) until the block ends; outcomes land in
    `outcomes` as they finish. Leaving the block waits for the requests in flight."""
    stop = asyncio.Event()
    deadline = time.monotonic() + max_s

    async def client(request: Request) -> None:
        for _ in range(max_per_client):
            if stop.is_set() or time.monotonic() > deadline:
                return
            outcomes.append(await request())
            await asyncio.sleep(pause_s)

    tasks = [asyncio.create_task(client(request)) for request in requests]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """How many outcomes had each label, most frequent first."""
    return dict(Counter(outcome.label for outcome in outcomes).most_common())


def counts_by_phase(outcomes: Iterable[Outcome]) -> dict[str, dict[str, dict[str, int]]]:
    """phase -> client kind -> label -> count."""
    grouped: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for outcome in outcomes:
        grouped[outcome.phase][outcome.kind].append(outcome)
    return {
        phase: {kind: counts(kinds[kind]) for kind in sorted(kinds)}
        for phase, kinds in grouped.items()
    }


def longest_s(outcomes: Iterable[Outcome]) -> float:
    return round(max((outcome.elapsed_s for outcome in outcomes), default=0.0), 3)
