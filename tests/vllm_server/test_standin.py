"""The vLLM stand-in over real HTTP: vLLM's shapes and errors, deterministic answers, LoRA
routes, metrics, client-disconnect aborts and injected faults."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.processes import ServerProcess
from tests.fixtures.standin import set_faults, start_standin
from tests.vllm_server.helpers import HELLO, HELLO_PROMPT_TOKENS, chat, post


def data_lines(lines: Iterator[str]) -> Iterator[str]:
    """The payloads of an event stream's `data: ` lines."""
    for line in lines:
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def stream_events(server: ServerProcess, path: str, body: dict) -> list[str]:
    with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=10.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(data_lines(response.iter_lines()))


def metrics(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    text = httpx.get(f"{server.url}/metrics", timeout=5.0).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def engine_labels(**extra: str) -> tuple:
    return tuple(sorted({"engine": "0", "model_name": "base", **extra}.items()))


def finished(server: ServerProcess, reason: str) -> float:
    key = ("vllm:request_success_total", engine_labels(finished_reason=reason))
    return metrics(server)[key]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


def lora_info(server: ServerProcess) -> dict[str, str]:
    text = httpx.get(f"{server.url}/metrics", timeout=5.0).text
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "vllm:lora_requests_info"
    )
    return family.samples[0].labels


def test_models_lists_base_and_preloaded_adapters(standin: ServerProcess) -> None:
    body = httpx.get(f"{standin.url}/v1/models").json()
    assert body["object"] == "list"
    base, *adapters = body["data"]
    assert base["id"] == "base" and base["root"] == "base" and base["parent"] is None
    assert base["max_model_len"] == 512 and base["owned_by"] == "vllm"
    assert base["permission"][0]["object"] == "model_permission"
    assert [(a["id"], a["root"], a["parent"]) for a in adapters] == [
        ("tenant-a", "/adapters/tenant-a", "base"),
        ("tenant-b", "/adapters/tenant-b", "base"),
    ]


def test_chat_completion_has_vllm_shape(standin: ServerProcess) -> None:
    body = chat(standin, model="tenant-a", max_tokens=5)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "tenant-a"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] == "length" and choice["stop_reason"] is None
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 5
    assert body["usage"] == {
        "prompt_tokens": HELLO_PROMPT_TOKENS,
        "total_tokens": HELLO_PROMPT_TOKENS + 5,
        "completion_tokens": 5,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


def test_answers_are_deterministic_and_differ_per_adapter(standin: ServerProcess) -> None:
    def content(model: str) -> str:
        return chat(standin, model=model, max_tokens=12)["choices"][0]["message"]["content"]

    assert content("base") == content("base")
    assert content("tenant-a") == content("tenant-a")
    assert len({content("base"), content("tenant-a"), content("tenant-b")}) == 3


def test_missing_model_is_served_as_base(standin: ServerProcess) -> None:
    assert chat(standin)["model"] == "base"
    assert (
        chat(standin, max_tokens=7)["choices"]
        == chat(standin, model="base", max_tokens=7)["choices"]
    )


def test_token_limits_and_finish_reasons(standin: ServerProcess) -> None:
    default = chat(standin)
    assert default["usage"]["completion_tokens"] == 16  # the stand-in's --max-tokens
    preferred = chat(standin, max_tokens=9, max_completion_tokens=3)
    assert preferred["usage"]["completion_tokens"] == 3
    # every natural answer is shorter than 64 tokens, so it ends on its own with "stop"
    natural = chat(standin, max_tokens=64)
    assert natural["choices"][0]["finish_reason"] == "stop"
    assert natural["usage"]["completion_tokens"] < 64
    forced = chat(standin, max_tokens=64, ignore_eos=True)
    assert forced["choices"][0]["finish_reason"] == "length"
    assert forced["usage"]["completion_tokens"] == 64
    # a prompt that leaves less room than max_tokens is cut to fit, not refused
    long_prompt = [{"role": "user", "content": "word " * 500}]
    cut = chat(standin, messages=long_prompt, max_tokens=100)
    assert cut["usage"]["total_tokens"] == 512
    assert cut["choices"][0]["finish_reason"] == "length"


def test_chat_stream_mirrors_vllm_chunks(standin: ServerProcess) -> None:
    whole = chat(standin, model="tenant-b", max_tokens=6)
    events = stream_events(
        standin,
        "/v1/chat/completions",
        {"model": "tenant-b", "messages": HELLO, "max_tokens": 6, "stream": True},
    )
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["model"] == "tenant-b" and "usage" not in chunk for chunk in chunks)
    opening, *tokens = chunks
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(tokens) == 6
    assert [t["choices"][0]["finish_reason"] for t in tokens] == [None] * 5 + ["length"]
    streamed = "".join(t["choices"][0]["delta"]["content"] for t in tokens)
    assert streamed == whole["choices"][0]["message"]["content"]


def test_stream_usage_only_when_asked(standin: ServerProcess) -> None:
    body = {"messages": HELLO, "max_tokens": 4, "stream": True}
    with_usage = stream_events(
        standin, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    *content, usage_chunk, done = with_usage
    assert done == "[DONE]"
    assert all("usage" not in orjson.loads(c) for c in content)
    last = orjson.loads(usage_chunk)
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": HELLO_PROMPT_TOKENS,
        "total_tokens": HELLO_PROMPT_TOKENS + 4,
        "completion_tokens": 4,
    }
    continuous = stream_events(
        standin,
        "/v1/chat/completions",
        {**body, "stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    )
    counts = [orjson.loads(c)["usage"]["completion_tokens"] for c in continuous[:-1]]
    assert counts == [0, 1, 2, 3, 4, 4]


def test_completions_whole_and_streamed(standin: ServerProcess) -> None:
    response = post(standin, "/v1/completions", {"prompt": "once upon a time", "max_tokens": 5})
    whole = response.json()
    assert whole["id"].startswith("cmpl-") and whole["object"] == "text_completion"
    (choice,) = whole["choices"]
    assert choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert whole["usage"]["prompt_tokens"] == 1 + 4  # BOS + words
    events = stream_events(
        standin,
        "/v1/completions",
        {"prompt": "once upon a time", "max_tokens": 5, "stream": True,
         "stream_options": {"include_usage": True}},
    )  # fmt: skip
    assert events[-1] == "[DONE]"
    *chunks, usage_chunk = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 5
    batch = post(standin, "/v1/completions", {"prompt": ["one", "two words"], "max_tokens": 2})
    assert [c["index"] for c in batch.json()["choices"]] == [0, 1]


def test_embeddings(standin: ServerProcess) -> None:
    single = post(standin, "/v1/embeddings", {"model": "base", "input": "hello"}).json()
    assert single["object"] == "list" and single["model"] == "base"
    (item,) = single["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 16
    assert math.isclose(sum(x * x for x in item["embedding"]), 1.0)
    many = post(standin, "/v1/embeddings", {"input": ["hello", "other text"]}).json()
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert many["data"][0]["embedding"] == item["embedding"]
    assert many["data"][1]["embedding"] != item["embedding"]
    assert many["usage"]["prompt_tokens"] == (1 + 1) + (1 + 2)


def test_tokenize_counts_like_usage(standin: ServerProcess) -> None:
    chat_tokens = post(standin, "/tokenize", {"messages": HELLO}).json()
    assert chat_tokens["count"] == len(chat_tokens["tokens"]) == HELLO_PROMPT_TOKENS
    assert chat_tokens["max_model_len"] == 512
    prompt_tokens = post(standin, "/tokenize", {"prompt": "a b c"}).json()
    assert prompt_tokens["count"] == 4


@pytest.mark.parametrize(
    ("path", "body", "status", "err_type", "param"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": HELLO}, 404, "NotFoundError",
         "model"),
        ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 513}, 400, "BadRequestError",
         "max_tokens"),
        ("/v1/chat/completions", {"model": "base"}, 400, "Bad Request", "body.messages"),
        ("/v1/completions", {"model": "base"}, 400, "Bad Request", "body.prompt"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x " * 600}]}, 400,
         "BadRequestError", "input_tokens"),
        ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, 400,
         "BadRequestError", "stream_options"),
    ],
)  # fmt: skip
def test_errors_have_vllm_shape(
    standin: ServerProcess, path: str, body: dict, status: int, err_type: str, param: str
) -> None:
    response = post(standin, path, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (err_type, param, status)
    if status == 404:
        assert error["message"] == "The model `nope` does not exist. Valid aliases: base."


def test_malformed_json_and_unknown_route(standin: ServerProcess) -> None:
    response = httpx.post(f"{standin.url}/v1/chat/completions", content=b'{"messages": [')
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "Bad Request"
    missing = httpx.get(f"{standin.url}/v1/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})


def test_runtime_lora_loading(standin: ServerProcess, tmp_path: Path) -> None:
    load, unload = "/v1/load_lora_adapter", "/v1/unload_lora_adapter"
    adapter_dir = tmp_path / "tenant-c"
    adapter_dir.mkdir()
    loaded = post(standin, load, {"lora_name": "tenant-c", "lora_path": str(adapter_dir)})
    assert loaded.status_code == 200
    assert loaded.text == "Success: LoRA adapter 'tenant-c' added successfully."
    assert "content-type" not in loaded.headers
    assert chat(standin, model="tenant-c")["model"] == "tenant-c"
    models = httpx.get(f"{standin.url}/v1/models").json()["data"]
    assert {"id": "tenant-c", "root": str(adapter_dir)}.items() <= models[-1].items()

    again = post(standin, load, {"lora_name": "tenant-c", "lora_path": str(adapter_dir)})
    assert again.status_code == 400 and again.json()["error"]["type"] == "InvalidUserInput"
    inplace = {"lora_name": "tenant-c", "lora_path": "hub/other", "load_inplace": True}
    assert post(standin, load, inplace).status_code == 200
    missing_dir = post(standin, load, {"lora_name": "tenant-d", "lora_path": "/no/such/dir"})
    assert missing_dir.status_code == 404
    assert missing_dir.json()["error"]["type"] == "NotFoundError"

    removed = post(standin, unload, {"lora_name": "tenant-c"})
    assert removed.status_code == 200
    assert removed.text == "Success: LoRA adapter 'tenant-c' removed successfully."
    assert "content-type" not in removed.headers
    gone = post(standin, "/v1/chat/completions", {"model": "tenant-c", "messages": HELLO})
    assert gone.status_code == 404
    assert post(standin, unload, {"lora_name": "tenant-c"}).status_code == 404


def test_metrics_count_requests_and_tokens(standin: ServerProcess) -> None:
    before = metrics(standin)
    chat(standin, model="tenant-a", max_tokens=3)
    after = metrics(standin)

    def delta(name: str, **labels: str) -> float:
        key = (name, engine_labels(**labels))
        return after[key] - before[key]

    assert delta("vllm:request_success_total", finished_reason="length") == 1
    assert delta("vllm:prompt_tokens_total") == HELLO_PROMPT_TOKENS
    assert delta("vllm:generation_tokens_total") == 3
    assert delta("vllm:time_to_first_token_seconds_count") == 1
    assert after[("vllm:num_requests_running", engine_labels())] == 0
    assert after[("vllm:kv_cache_usage_perc", engine_labels())] == 0
    assert lora_info(standin) == {
        "max_lora": "4",
        "running_lora_adapters": "",
        "waiting_lora_adapters": "",
    }


def test_client_disconnect_mid_stream_aborts(standin: ServerProcess) -> None:
    set_faults(standin, itl_ms=100)
    aborted = finished(standin, "abort")
    body = {"model": "tenant-a", "messages": HELLO, "max_tokens": 100, "stream": True}
    with httpx.stream("POST", f"{standin.url}/v1/chat/completions", json=body) as response:
        lines = data_lines(response.iter_lines())
        next(lines), next(lines)  # the role chunk and the first token: generation is running
        running = metrics(standin)[("vllm:num_requests_running", engine_labels())]
        assert running == 1
        assert lora_info(standin)["running_lora_adapters"] == "tenant-a"
    wait_until(lambda: finished(standin, "abort") == aborted + 1, "abort counted")
    assert metrics(standin)[("vllm:num_requests_running", engine_labels())] == 0


def test_fail_rate_one_answers_500(standin: ServerProcess) -> None:
    set_faults(standin, fail_rate=1)
    response = post(standin, "/v1/chat/completions", {"messages": HELLO, "stream": True})
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("InternalServerError", 500)
    set_faults(standin, fail_rate=0)
    assert chat(standin)["object"] == "chat.completion"


def test_cut_after_chunks_ends_stream_without_done(standin: ServerProcess) -> None:
    set_faults(standin, cut_after_chunks=3)
    errors_before = finished(standin, "error")
    body = {"messages": HELLO, "max_tokens": 10, "stream": True}
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{standin.url}/v1/chat/completions", json=body) as response,
    ):
        received.extend(data_lines(response.iter_lines()))
    assert "[DONE]" not in received
    assert len(received) == 1 + 3  # the role chunk, then three tokens
    assert finished(standin, "error") == errors_before + 1


def test_stall_holds_back_the_first_byte(standin: ServerProcess) -> None:
    set_faults(standin, stall_ms=30_000)
    aborted = finished(standin, "abort")
    with pytest.raises(httpx.ReadTimeout):
        post(standin, "/v1/chat/completions", {"messages": HELLO}, timeout=0.5)
    # the stalled request is dropped when its client goes away, like any other
    wait_until(lambda: finished(standin, "abort") == aborted + 1, "stalled request aborted")


def test_faults_endpoint_validates(standin: ServerProcess) -> None:
    assert httpx.get(f"{standin.url}/standin/faults").json()["fail_rate"] == 0
    assert post(standin, "/standin/faults", {"fail_rate": 2}).status_code == 400
    assert post(standin, "/standin/faults", {"latency": 1}).status_code == 400
    assert set_faults(standin, ttft_ms=5)["ttft_ms"] == 5


def test_adapters_wait_for_a_lora_slot(tmp_path: Path) -> None:
    server = start_standin(
        tmp_path, "--max-loras", "1", "--lora", "a=/adapters/a", "--lora", "b=/adapters/b"
    )
    try:
        slow = {"messages": HELLO, "max_tokens": 100, "stream": True}
        set_faults(server, itl_ms=100)
        url = f"{server.url}/v1/chat/completions"
        with httpx.stream("POST", url, json={**slow, "model": "a"}) as first:
            # keep the line iterator: dropping it would close the connection (and abort a)
            first_lines = data_lines(first.iter_lines())
            next(first_lines)
            with httpx.stream("POST", url, json={**slow, "model": "b", "max_tokens": 2}) as second:
                wait_until(lambda: lora_info(server)["waiting_lora_adapters"] == "b", "b waits")
                assert lora_info(server)["running_lora_adapters"] == "a"
                waiting = metrics(server)[("vllm:num_requests_waiting", engine_labels())]
                assert waiting == 1
                first.close()  # a's client leaves, a is aborted and frees its slot
                assert list(data_lines(second.iter_lines()))[-1] == "[DONE]"
    finally:
        server.stop()


def test_openai_sdk_talks_to_the_standin(standin: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{standin.url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(model="tenant-a", messages=HELLO, max_tokens=4)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    stream = client.chat.completions.create(
        model="tenant-a",
        messages=HELLO,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == (
        HELLO_PROMPT_TOKENS + 4
    )
