"""Every failure ends in a clear OpenAI-format error with the right status, never a hang."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
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


def aborted_requests(standin: ServerProcess) -> float:
    return metric_value(standin.url, "vllm:request_success_total", finished_reason="abort")


def wait_for_an_abort(standin: ServerProcess, aborted_before: float) -> None:
    """Wait (10 s at most) until the stand-in has aborted more requests than `aborted_before`."""
    deadline = time.monotonic() + 10
    while aborted_requests(standin) == aborted_before:
        assert time.monotonic() < deadline, "the upstream request was never aborted"
        time.sleep(0.05)


def chat_body(*, stream: bool, max_tokens: int) -> dict[str, object]:
    return {"model": "base", "messages": MESSAGES, "stream": stream, "max_tokens": max_tokens}


@dataclass
class StreamThroughSigterm:
    """A client streaming from a gateway that gets SIGTERM once the first bytes arrived."""

    received: list[bytes] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)  # what ended the stream early
    client_finished: bool = False  # within 30 s of the SIGTERM

    @property
    def body(self) -> bytes:
        return b"".join(self.received)


def stream_through_sigterm(server: Gateway, max_tokens: int) -> StreamThroughSigterm:
    """Stream a chat completion of `max_tokens` tokens from `server` in a thread, SIGTERM the
    gateway once the first bytes are in, and wait up to 30 s for the client to finish."""
    seen = StreamThroughSigterm()
    started = threading.Event()

    def stream() -> None:
        try:
            with httpx.stream(
                "POST",
                server.url + "/v1/chat/completions",
                json=chat_body(stream=True, max_tokens=max_tokens),
                headers=server.headers,
                timeout=30,
            ) as response:
                for data in response.iter_raw():
                    seen.received.append(data)
                    started.set()
        except Exception as error:  # a response cut off mid-body: RemoteProtocolError
            seen.failures.append(error)

    client = threading.Thread(target=stream)
    client.start()
    assert started.wait(10)
    server.server.process.send_signal(signal.SIGTERM)
    client.join(30)
    seen.client_finished = not client.is_alive()
    return seen


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def module_gateway(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory, name: str, **settings: str
) -> Iterator[Gateway]:
    """A gateway with `settings`, for a module-scoped fixture to yield from."""
    server = start_gateway(standin.url, tmp_path_factory.mktemp(name), **settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tight_gateway(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway with short timeouts and a small body limit."""
    yield from module_gateway(
        standin,
        tmp_path_factory,
        "tight",
        upstream__first_byte_timeout_s="1",
        upstream__stream_idle_timeout_s="1",
        server__max_body_bytes="2000",
    )


@pytest.fixture(scope="module")
def patient_gateway(
    standin: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway that waits longer for response headers than between two stream reads."""
    yield from module_gateway(
        standin,
        tmp_path_factory,
        "patient",
        upstream__first_byte_timeout_s="5",
        upstream__stream_idle_timeout_s="1",
    )


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


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_headers_may_take_up_to_the_first_byte_timeout(
    patient_gateway: Gateway, standin: ServerProcess, stream: bool
) -> None:
    """vLLM silent for 2 s before its headers: within first_byte_timeout_s (5 s), though longer
    than stream_idle_timeout_s (1 s), so streams are answered as plain requests are."""
    set_faults(standin, stall_ms=2000)
    response = httpx.post(
        patient_gateway.url + "/v1/chat/completions",
        json=chat_body(stream=stream, max_tokens=4),
        headers=patient_gateway.headers,
        timeout=20,
    )
    assert response.status_code == 200
    if stream:
        assert response.content.endswith(b"data: [DONE]\n\n")


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
        json=chat_body(stream=True, max_tokens=16),
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
    aborted_before = aborted_requests(standin)
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json=chat_body(stream=True, max_tokens=200),
        headers=gateway.headers,
    ) as response:
        next(response.iter_raw())
    wait_for_an_abort(standin, aborted_before)
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
    try:
        seen = stream_through_sigterm(server, max_tokens=20)
        assert seen.body.endswith(b"data: [DONE]\n\n")
        # uvicorn re-raises the signal once it has drained, so the exit is "killed by SIGTERM"
        assert server.server.process.wait(30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz")
    finally:
        server.stop()


def test_streams_outliving_the_drain_end_with_an_error_counted_as_one(
    standin: ServerProcess, tmp_path: Path
) -> None:
    """SIGTERM with a stream far from done: when drain_timeout_s is up the client gets a final
    error event and a properly ended response, vLLM's request is aborted, and the access log
    and the usage ledger count a 503, not a 200."""
    set_faults(standin, itl_ms=100)
    server = start_gateway(standin.url, tmp_path, server__drain_timeout_s="1")
    aborted_before = aborted_requests(standin)
    try:
        seen = stream_through_sigterm(server, max_tokens=300)
        assert seen.client_finished
        assert server.server.process.wait(30) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    assert seen.failures == []
    last_event = seen.body.rstrip(b"\n").split(b"\n\n")[-1]
    assert last_event.startswith(b"data: ")
    error = json.loads(last_event[len(b"data: ") :])["error"]
    assert error["code"] == "gateway_shutting_down"
    wait_for_an_abort(standin, aborted_before)
    port = server.url.rsplit(":", 1)[1]
    access_lines = [
        json.loads(line)
        for line in (tmp_path / f"gateway-{port}.log").read_text().splitlines()
        if line.startswith('{"ts"') and '"event":"request"' in line
    ]
    assert [line["status"] for line in access_lines] == [503]
    with closing(sqlite3.connect(tmp_path / f"gateway-{port}.db")) as store:
        rows = store.execute(
            "SELECT requests, errors FROM usage_daily WHERE tenant_id = ?", (server.tenant_id,)
        ).fetchall()
    assert rows == [(1, 1)]
