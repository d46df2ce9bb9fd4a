"""Every failure ends in a clear OpenAI-format error with the right status, never a hang."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.metrics import metric_value
from tests.fixtures.processes import ServerProcess, free_port

MESSAGES = [{"role": "user", "content": "hello"}]


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=gateway.api_key, max_retries=0, timeout=20
    )


def set_faults(standin: ServerProcess, **faults: float) -> None:
    httpx.post(standin.url + "/standin/faults", json=faults).raise_for_status()


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


@pytest.fixture(scope="module")
def tight_gateway(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway with short timeouts and a small body limit."""
    server = start_gateway(
        standin.url,
        tmp_path_factory.mktemp("tight"),
        upstream__first_byte_timeout_s="1",
        upstream__stream_idle_timeout_s="1",
        server__max_body_bytes="2000",
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def calm_standin(standin: ServerProcess) -> Iterator[None]:
    yield
    set_faults(standin, fail_rate=0, cut_after_chunks=0, stall_ms=0, ttft_ms=0, itl_ms=0)


def test_upstream_down_is_503_and_not_ready(tmp_path: Path) -> None:
    server = start_gateway(f"http://127.0.0.1:{free_port()}", tmp_path)
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(server).chat.completions.create(model="base", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert_openai_error(httpx.get(server.url + "/readyz"), 503)
    finally:
        server.stop()


def test_upstream_too_slow_is_504(tight_gateway: Gateway, standin: ServerProcess) -> None:
    set_faults(standin, stall_ms=3000)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(tight_gateway).chat.completions.create(model="base", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"


def test_stalled_stream_ends_with_an_error_event(
    tight_gateway: Gateway, standin: ServerProcess
) -> None:
    set_faults(standin, itl_ms=3000)
    stream = sdk(tight_gateway).chat.completions.create(
        model="base", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError, match="stalled"):
        for _ in stream:
            pass


def test_upstream_errors_are_relayed_with_their_status(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        sdk(gateway).chat.completions.create(model="no-such-model", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        sdk(gateway).chat.completions.create(model="base", messages=MESSAGES, max_tokens=100000)


def test_upstream_500_is_relayed(gateway: Gateway, standin: ServerProcess) -> None:
    set_faults(standin, fail_rate=1)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="base", messages=MESSAGES)
    assert caught.value.status_code == 500


def test_stream_cut_midway_ends_with_an_error_event(
    gateway: Gateway, standin: ServerProcess
) -> None:
    set_faults(standin, cut_after_chunks=3)
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "base", "messages": MESSAGES, "stream": True, "max_tokens": 16},
        headers=gateway.headers,
    )
    last = response.content.rstrip(b"\n").split(b"\n\n")[-1]
    assert last.startswith(b'data: {"error":')
    stream = sdk(gateway).chat.completions.create(model="base", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_client_disconnect_aborts_the_upstream_request(
    gateway: Gateway, standin: ServerProcess
) -> None:
    set_faults(standin, itl_ms=50)
    aborted_before = metric_value(
        standin.url, "vllm:request_success_total", finished_reason="abort"
    )
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": "base", "messages": MESSAGES, "stream": True, "max_tokens": 200},
        headers=gateway.headers,
    ) as response:
        next(response.iter_raw())
    deadline = time.monotonic() + 10
    while metric_value(standin.url, "vllm:request_success_total", finished_reason="abort") == (
        aborted_before
    ):
        assert time.monotonic() < deadline, "the upstream request was never aborted"
        time.sleep(0.05)
    assert metric_value(standin.url, "vllm:num_requests_running") == 0


def test_body_over_the_limit_is_413(tight_gateway: Gateway) -> None:
    big = [{"role": "user", "content": "x" * 5000}]
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(tight_gateway).chat.completions.create(model="base", messages=big)
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b'{"model": "base"}', "messages"),
        (b'{"model": "base", "messages": "hi"}', "messages"),
        (
            b'{"model": "base", "messages": [{"role": "user", "content": "x"}], "stream": 1}',
            "stream",
        ),
    ],
)
def test_malformed_requests_are_400_with_param(
    gateway: Gateway, body: bytes, param: str | None
) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=body,
        headers={**gateway.headers, "content-type": "application/json"},
    )
    assert assert_openai_error(response, 400)["param"] == param


def test_sdk_raises_bad_request_for_missing_prompt(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk(gateway).post("/completions", body={"model": "base"}, cast_to=object)


def test_unknown_route_and_wrong_method(gateway: Gateway) -> None:
    assert assert_openai_error(httpx.get(gateway.url + "/v1/nope"), 404)["code"] == "unknown_url"
    assert_openai_error(httpx.get(gateway.url + "/v1/chat/completions"), 405)
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).post("/assistants-nope", body={}, cast_to=object)


def test_sigterm_lets_in_flight_streams_finish(standin: ServerProcess, tmp_path: Path) -> None:
    set_faults(standin, itl_ms=100)
    server = start_gateway(standin.url, tmp_path, server__drain_timeout_s="20")
    received: list[bytes] = []
    started = threading.Event()

    def stream() -> None:
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json={"model": "base", "messages": MESSAGES, "stream": True, "max_tokens": 20},
            headers=server.headers,
            timeout=30,
        ) as response:
            for data in response.iter_raw():
                received.append(data)
                started.set()

    client = threading.Thread(target=stream)
    client.start()
    try:
        assert started.wait(10)
        server.server.process.send_signal(signal.SIGTERM)
        client.join(30)
        assert b"".join(received).endswith(b"data: [DONE]\n\n")
        # uvicorn re-raises the signal once it has drained, so the exit is "killed by SIGTERM"
        assert server.server.process.wait(30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz")
    finally:
        server.stop()
