"""Hostile request bodies, to the inference routes and to the admin API: every one is answered
in the OpenAI error format with a 4xx (a body that is odd but valid may be served instead),
never a 5xx, and the gateway stays healthy.

Admin bodies put integers of 2^64 and more in every numeric field of tenants, keys and safety
policies (also their query parameters), NUL bytes and overlong strings in their text fields.
A NUL byte in free text (metadata values, descriptions) may be accepted, provided it is
stored and read back unchanged; everywhere else these bodies are refused.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.chaos.expectations import Expectations
from tests.chaos.gateways import log_lines_since, log_size
from tests.chaos.load import OPENAI_ERROR_FIELDS, chat_body
from tests.chaos.report import ChaosReport
from tests.fixtures.gateway import ADMIN_KEY, Gateway

HUGE = 2**64
BODY_LIMIT = 4 * 1024 * 1024  # server.max_body_bytes, the default
LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent",
    "tokens_per_day",
    "tokens_per_month",
)
RULE = {"name": "r", "detector": "email", "direction": "input", "action": "block"}
SIZE_RULE = {"name": "s", "detector": "size_limits", "direction": "input", "action": "block"}
GUARD = {"model": "base"}


@dataclass(frozen=True)
class Hostile:
    """One hostile request. `may_serve`: odd but valid, so a 2xx is fine too, and then
    `read_back` (path, bytes) names a GET whose body must hold the value unchanged."""

    name: str
    method: str
    path: str
    body: bytes | None = None
    may_serve: bool = False
    read_back: tuple[str, bytes] | None = None


def encoded(body: Any) -> bytes:
    """JSON as a client may send it: the standard library writes integers of any size."""
    return json.dumps(body).encode()


def nested(depth: int) -> bytes:
    """A chat body whose extra field `metadata` is `depth` arrays deep (the standard
    library and orjson both refuse to write that deep)."""
    return encoded(chat_body())[:-1] + b', "metadata": ' + b"[" * depth + b"]" * depth + b"}"


def chat(name: str, body: bytes, may_serve: bool = False) -> Hostile:
    return Hostile(name, "POST", "/v1/chat/completions", body, may_serve)


def chat_with(name: str, may_serve: bool = False, **fields: Any) -> Hostile:
    return chat(name, encoded({**chat_body(), **fields}), may_serve)


def user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def inference_cases() -> list[Hostile]:
    giant = BODY_LIMIT - 1000
    completions = "/v1/completions"
    return [
        chat("not JSON", b"this is not json"),
        chat("empty body", b""),
        chat("binary garbage", bytes(range(256))),
        chat("JSON array", b"[1, 2, 3]"),
        chat("JSON null", b"null"),
        chat("invalid UTF-8", encoded(chat_body())[:-1] + b', "user": "\xff\xfe"}'),
        chat("lone surrogate", encoded(chat_body())[:-1] + b', "user": "\\ud800"}'),
        chat("raw NUL byte", b'{"model": "ba\x00se", "messages": []}'),
        chat_with("NUL in content", True, messages=user("a\u0000b")),
        chat_with("NUL in model", model="base\u0000"),
        chat_with("NUL in role", True, messages=[{"role": "us\u0000er", "content": "hi"}]),
        chat("max_tokens 1e400", encoded(chat_body())[:-1] + b', "max_tokens": 1e400}'),
        chat_with("max_tokens 2^64", max_tokens=HUGE),
        chat_with("max_tokens -2^63", max_tokens=-(2**63)),
        chat_with("max_tokens 2^63-1", max_tokens=2**63 - 1),
        # n is vLLM's to check: the gateway only requires an integer
        chat_with("n 2^63-1", True, n=2**63 - 1),
        chat_with("n 0", True, n=0),
        chat_with("temperature 1e308", True, temperature=1e308),
        chat_with("seed 2^64", seed=HUGE),
        chat_with("top_k -2^63", True, top_k=-(2**63)),
        chat("nested 100 deep", nested(100), True),
        chat("nested 300 deep", nested(300), True),
        chat("nested 1000 deep", nested(1000), True),
        chat("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000),
        chat_with("messages object", messages={"role": "user"}),
        chat_with("messages of ints", messages=[1, 2]),
        chat_with("role int", messages=[{"role": 1, "content": "hi"}]),
        chat_with("content int", True, messages=user(5)),
        chat_with("model int", model=5),
        chat_with("model list", model=["base"]),
        chat_with("stream string", stream="yes"),
        chat_with("stream_options list", stream=True, stream_options=[]),
        chat_with("include_usage string", stream=True, stream_options={"include_usage": "y"}),
        chat_with("max_tokens string", max_tokens="5"),
        chat_with("max_tokens bool", max_tokens=True),
        chat_with("temperature string", temperature="hot"),
        chat_with("stop int", True, stop=5),
        chat_with("tools string", True, tools="all"),
        chat("duplicate keys", b'{"model": "x", ' + encoded(chat_body())[1:], True),
        chat_with("giant content", True, messages=user("x" * giant)),
        chat_with("giant model name", model="m" * giant),
        chat_with("100k empty messages", True, messages=user("") * 100_000),
        chat_with("over the body limit", messages=user("x" * BODY_LIMIT)),
        Hostile("prompt int", "POST", completions, encoded({"model": "base", "prompt": 5})),
        Hostile("prompt [[]]", "POST", completions, encoded({"model": "base", "prompt": [[]]})),
        Hostile("prompt floats", "POST", completions, encoded({"model": "base", "prompt": [1.5]})),
        Hostile("token id 2^64", "POST", completions, encoded({"model": "base", "prompt": [HUGE]})),
        Hostile(
            "token id -1", "POST", completions, encoded({"model": "base", "prompt": [-1]}), True
        ),
        Hostile(
            "embeddings input {}", "POST", "/v1/embeddings", encoded({"model": "base", "input": {}})
        ),
        Hostile(
            "embeddings streamed",
            "POST",
            "/v1/embeddings",
            encoded({"model": "base", "input": "x", "stream": True}),
        ),
    ]


def admin(
    name: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    read_back: tuple[str, bytes] | None = None,
) -> Hostile:
    """An admin request; with `read_back` (a path under /admin/v1 and the bytes it must
    hold), one that may be served if the value reads back unchanged."""
    raw = body if body is None or isinstance(body, bytes) else encoded(body)
    if read_back is None:
        return Hostile(name, method, "/admin/v1" + path, raw)
    back_path, value = read_back
    return Hostile(name, method, "/admin/v1" + path, raw, True, ("/admin/v1" + back_path, value))


def unique() -> str:
    return f"hostile-{uuid.uuid4().hex[:12]}"


def admin_cases(tenant_id: str, key_id: str) -> list[Hostile]:
    """Every numeric field at 2^64 and beyond, then NUL bytes, overlong strings, bad JSON;
    changes go to the tenant `tenant_id` and its key `key_id`."""
    tenant, key = f"/tenants/{tenant_id}", f"/keys/{key_id}"
    cases: list[Hostile] = []
    for value in (HUGE, 10**30, -HUGE):
        for field in LIMIT_FIELDS:
            limits = {"limits": {field: value}}
            cases += [
                admin(f"tenant {field}={value}", "POST", "/tenants", {"name": unique(), **limits}),
                admin(f"tenant patch {field}={value}", "PATCH", tenant, limits),
                admin(
                    f"key {field}={value}",
                    "POST",
                    "/keys",
                    {"tenant_id": tenant_id, "name": "h", **limits},
                ),
                admin(f"key patch {field}={value}", "PATCH", key, limits),
            ]
        cases += [
            admin(
                f"key expires_at={value}",
                "POST",
                "/keys",
                {"tenant_id": tenant_id, "name": "h", "expires_at": value},
            ),
            admin(
                f"key expires_in_s={value}",
                "POST",
                "/keys",
                {"tenant_id": tenant_id, "name": "h", "expires_in_s": value},
            ),
            admin(f"key patch expires_at={value}", "PATCH", key, {"expires_at": value}),
            admin(
                f"rotate grace_period_s={value}", "POST", f"{key}/rotate", {"grace_period_s": value}
            ),
            admin(
                f"rule window_chars={value}",
                "PUT",
                "/safety/policies/h",
                {"rules": [{**RULE, "window_chars": value}]},
            ),
            admin(
                f"rule max_prompt_chars={value}",
                "PUT",
                "/safety/policies/h",
                {"rules": [{**SIZE_RULE, "max_prompt_chars": value}]},
            ),
            admin(
                f"rule max_messages={value}",
                "PUT",
                "/safety/policies/h",
                {"rules": [{**SIZE_RULE, "max_messages": value}]},
            ),
            admin(
                f"guard max_tokens={value}",
                "PUT",
                "/safety/policies/h",
                {"guard": {**GUARD, "max_tokens": value}},
            ),
            admin(
                f"guard timeout_s={value}",
                "PUT",
                "/safety/policies/h",
                {"guard": {**GUARD, "timeout_s": value}},
            ),
            admin(f"keys offset={value}", "GET", f"/keys?offset={value}"),
            admin(f"keys limit={value}", "GET", f"/keys?limit={value}"),
            admin(f"audit since={value}", "GET", f"/audit?since={value}"),
            admin(f"audit limit={value}", "GET", f"/audit?limit={value}"),
        ]
    cases += [
        admin(
            "expires_at 1e400",
            "POST",
            "/keys",
            b'{"tenant_id": "%s", "name": "h", "expires_at": 1e400}' % tenant_id.encode(),
        ),
        admin("tenant name NUL", "POST", "/tenants", {"name": "a\u0000b"}),
        admin("key name NUL", "POST", "/keys", {"tenant_id": tenant_id, "name": "a\u0000b"}),
        admin("tenant_id NUL", "POST", "/keys", {"tenant_id": tenant_id + "\u0000", "name": "h"}),
        admin("model name NUL", "PATCH", tenant, {"models": {"m\u0000": {"base_model": "base"}}}),
        admin("base model NUL", "PATCH", tenant, {"models": {"m": {"base_model": "ba\u0000se"}}}),
        admin("metadata key NUL", "PATCH", tenant, {"metadata": {"k\u0000": "v"}}),
        admin("tenant path NUL", "GET", "/tenants/a%00b"),
        admin("policy path NUL", "GET", "/safety/policies/a%00b"),
        admin(
            "deny term NUL",
            "PUT",
            "/safety/policies/h",
            {"rules": [{**RULE, "detector": "deny_terms", "terms": ["\u0000"]}]},
            read_back=("/safety/policies/h", b"\\u0000"),
        ),
        admin(
            "metadata value NUL",
            "PATCH",
            tenant,
            {"metadata": {"k": "a\u0000b"}},
            read_back=(tenant, b"a\\u0000b"),
        ),
        admin(
            "description NUL",
            "PUT",
            "/safety/policies/d",
            {"description": "a\u0000b"},
            read_back=("/safety/policies/d", b"a\\u0000b"),
        ),
        admin("tenant name 10k", "POST", "/tenants", {"name": "n" * 10_000}),
        admin("key name 10k", "POST", "/keys", {"tenant_id": tenant_id, "name": "n" * 10_000}),
        admin("tenant_id 1M", "POST", "/keys", {"tenant_id": "t" * 1_000_000, "name": "h"}),
        admin("model name 300", "PATCH", tenant, {"models": {"m" * 300: {"base_model": "base"}}}),
        admin("metadata value 2000", "PATCH", tenant, {"metadata": {"k": "v" * 2000}}),
        admin("metadata key 100", "PATCH", tenant, {"metadata": {"k" * 100: "v"}}),
        admin(
            "metadata 65 entries", "PATCH", tenant, {"metadata": {f"k{i}": "v" for i in range(65)}}
        ),
        admin("allowed_models 1000", "PATCH", key, {"allowed_models": ["base"] * 1000}),
        admin("description 2000", "PUT", "/safety/policies/h", {"description": "d" * 2000}),
        admin(
            "deny term 101",
            "PUT",
            "/safety/policies/h",
            {"rules": [{**RULE, "detector": "deny_terms", "terms": ["t" * 101]}]},
        ),
        admin(
            "pattern 1001",
            "PUT",
            "/safety/policies/h",
            {"rules": [{**RULE, "detector": "deny_regex", "patterns": ["p" * 1001]}]},
        ),
        admin("policy name 1000", "PUT", "/safety/policies/" + "p" * 1000, {}),
        admin("tenant path 60k", "GET", "/tenants/" + "t" * 60_000),
        admin("not JSON", "POST", "/tenants", b"this is not json"),
        admin("invalid UTF-8", "POST", "/tenants", b'{"name": "\xff\xfe"}'),
        admin("raw NUL byte", "POST", "/tenants", b'{"name": "a\x00b"}'),
        admin("nested 100000 deep", "POST", "/tenants", b"[" * 100_000 + b"]" * 100_000),
        admin("JSON array", "POST", "/tenants", b"[]"),
        admin("name int", "POST", "/tenants", {"name": 5}),
        admin("limits list", "POST", "/tenants", {"name": "h", "limits": []}),
    ]
    return cases


def is_openai_error(response: httpx.Response) -> bool:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and set(error) == OPENAI_ERROR_FIELDS


def send_hostile(client: httpx.Client, case: Hostile, headers: dict[str, str]) -> str:
    """What the gateway answered: '400' (an error in the OpenAI format), '500 not in the
    OpenAI format', '200 served', '200 read back changed', a transport error's name."""
    headers = {**headers, "content-type": "application/json"}
    try:
        response = client.request(case.method, case.path, content=case.body, headers=headers)
    except httpx.TransportError as error:
        return type(error).__name__
    status = response.status_code
    if 200 <= status < 300:
        if case.read_back is not None:
            path, value = case.read_back
            if value not in client.get(path, headers=headers).content:
                return f"{status} read back changed"
        return f"{status} served"
    return str(status) if is_openai_error(response) else f"{status} not in the OpenAI format"


def refused(label: str) -> bool:
    """A 4xx in the OpenAI format."""
    return label.isdigit() and label.startswith("4")


def served_or_refused(label: str) -> bool:
    return refused(label) or (label.startswith("2") and label.endswith(" served"))


def run_cases(
    gateway: Gateway, cases: list[Hostile], headers: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Each case's label, and what the gateway logged meanwhile (access log left out)."""
    offset = log_size(gateway)
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        labels = {case.name: send_hostile(client, case, headers) for case in cases}
    return labels, log_lines_since(gateway, offset)


def check_cases(
    expect: Expectations, cases: list[Hostile], labels: dict[str, str], log_lines: list[str]
) -> None:
    wrong = {
        case.name: labels[case.name]
        for case in cases
        if not (
            served_or_refused(labels[case.name]) if case.may_serve else refused(labels[case.name])
        )
    }
    expect.that(
        not wrong,
        "every hostile body refused with a 4xx in the OpenAI format (or, if valid, served)",
        wrong,
    )
    tracebacks = sum(line.startswith("Traceback") for line in log_lines)
    expect.that(tracebacks == 0, "no traceback in the gateway's log", tracebacks)


def check_healthy(expect: Expectations, gateway: Gateway) -> None:
    """The process answers, serves a normal request, and its admin listings still read."""
    expect.that(gateway.server.process.poll() is None, "the gateway is still running")
    healthz = httpx.get(gateway.url + "/healthz", timeout=10).status_code
    served = httpx.post(
        gateway.url + "/v1/chat/completions", json=chat_body(), headers=gateway.headers, timeout=30
    ).status_code
    listings = {
        path: gateway.admin("GET", path).status_code
        for path in ("/tenants", "/keys", "/audit", "/safety/policies", "/usage")
    }
    expect.that(
        healthz == 200 and served == 200 and set(listings.values()) == {200},
        "afterwards: /healthz, a normal request and every admin listing answer 200",
        {"healthz": healthz, "chat": served, **listings},
    )


def summary(labels: dict[str, str]) -> dict[str, object]:
    """How many cases got each answer, and each case not refused with a 4xx."""
    answers: dict[str, int] = {}
    for label in labels.values():
        answers[label] = answers.get(label, 0) + 1
    not_refused = {name: label for name, label in labels.items() if not refused(label)}
    return {"cases": len(labels), "answers": answers, "not_refused": not_refused}


def test_hostile_inference_bodies(gateway: Gateway, chaos_report: ChaosReport) -> None:
    cases = inference_cases()
    labels, log_lines = run_cases(gateway, cases, gateway.headers)
    chaos_report.record("6a hostile inference bodies", **summary(labels))
    expect = Expectations()
    check_cases(expect, cases, labels, log_lines)
    check_healthy(expect, gateway)
    expect.verify()


def test_hostile_admin_bodies(gateway: Gateway, chaos_report: ChaosReport) -> None:
    created = gateway.admin(
        "POST", "/keys", json={"tenant_id": gateway.tenant_id, "name": "target"}
    )
    assert created.status_code == 201, created.text
    cases = admin_cases(gateway.tenant_id, created.json()["id"])
    labels, log_lines = run_cases(gateway, cases, {"authorization": f"Bearer {ADMIN_KEY}"})
    chaos_report.record("6b hostile admin bodies", **summary(labels))
    expect = Expectations()
    check_cases(expect, cases, labels, log_lines)
    check_healthy(expect, gateway)
    expect.verify()
