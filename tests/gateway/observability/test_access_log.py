"""The access log writes one JSON line per call to the file descriptor it is given."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import orjson
import pytest

from gateway.core.context import RequestContext
from gateway.observability import access_log
from gateway.settings import ObservabilitySettings

BODY = {
    "model": "base",
    "messages": [{"role": "user", "content": "a secret plan"}],
    "max_tokens": 3,
}


@pytest.fixture
def log_pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    yield read_end, write_end
    access_log.configure(ObservabilitySettings())  # back to stdout for other tests
    os.close(read_end)
    os.close(write_end)


def lines(read_end: int) -> list[dict]:
    try:
        data = os.read(read_end, 1 << 16)
    except BlockingIOError:
        return []
    return [orjson.loads(line) for line in data.splitlines()]


def finished() -> RequestContext:
    ctx = RequestContext("req-1")
    ctx.started = time.perf_counter() - 0.2
    ctx.endpoint, ctx.stream, ctx.status = "/v1/chat/completions", True, 200
    ctx.tenant_id, ctx.tenant_name, ctx.key_id = "tenant_1", "acme", "key_1"
    ctx.public_model, ctx.upstream_model = "support-bot", "tenant-a"
    ctx.replica = "http://vllm-0:8000"
    ctx.first_event_at = ctx.started + 0.05
    ctx.usage = {"prompt_tokens": 11, "completion_tokens": 4}
    ctx.trace_id = "0af7651916cd43dd8448eb211c80319c"
    return ctx


def test_one_line_with_every_field(log_pipe: tuple[int, int]) -> None:
    read_end, write_end = log_pipe
    access_log.configure(ObservabilitySettings(), fd=write_end)
    access_log.log_request(finished(), 0.2)
    [line] = lines(read_end)
    assert line.pop("ts").endswith("+00:00")
    assert 45 < line.pop("ttft_ms") < 55
    assert line.pop("overhead_ms") > 0
    assert line == {
        "event": "request",
        "request_id": "req-1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "endpoint": "/v1/chat/completions",
        "tenant": "acme",
        "tenant_id": "tenant_1",
        "key_id": "key_1",
        "model": "support-bot",
        "upstream_model": "tenant-a",
        "replica": "http://vllm-0:8000",
        "status": 200,
        "stream": True,
        "latency_ms": 200.0,
        "prompt_tokens": 11,
        "completion_tokens": 4,
    }


def test_prompts_only_with_the_debug_setting(log_pipe: tuple[int, int]) -> None:
    read_end, write_end = log_pipe
    access_log.configure(ObservabilitySettings(), fd=write_end)
    access_log.log_prompt(finished(), BODY)
    assert lines(read_end) == []
    access_log.configure(ObservabilitySettings(log_prompts=True), fd=write_end)
    access_log.log_prompt(finished(), BODY)
    [line] = lines(read_end)
    assert line["event"] == "prompt"
    assert line["request_id"] == "req-1"
    assert line["messages"] == [{"role": "user", "content": "a secret plan"}]
    assert "max_tokens" not in line


def test_switched_off(log_pipe: tuple[int, int]) -> None:
    read_end, write_end = log_pipe
    access_log.configure(ObservabilitySettings(access_log=False, log_prompts=True), fd=write_end)
    access_log.log_request(finished(), 0.2)
    access_log.log_prompt(finished(), BODY)
    assert lines(read_end) == []


def test_a_closed_log_does_not_fail_the_request() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    access_log.configure(ObservabilitySettings(), fd=write_end)
    try:
        access_log.log_request(finished(), 0.2)
    finally:
        access_log.configure(ObservabilitySettings())
