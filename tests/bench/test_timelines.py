"""The GPU benchmark's TTFT decomposition, on a hand-written access log: each request's client
TTFT splits into the hop to the gateway, its own work, the upstream part and the relay back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.gpu.timelines import decompose, frontend_split, queue_entries, split_at_queue

SENT_S = 1_800_000_000.0


def access_line(request_id: str, arrival_s: float, ttft_ms: float, overhead_ms: float) -> str:
    latency_ms = 900.0
    end = datetime.fromtimestamp(arrival_s + latency_ms / 1e3, UTC)
    entry = {
        "ts": end.isoformat(timespec="milliseconds"),
        "event": "request",
        "request_id": request_id,
        "status": 200,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "overhead_ms": overhead_ms,
    }
    return json.dumps(entry) + "\n"


def test_a_requests_ttft_splits_into_its_parts(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text(
        "INFO: started\n"
        + access_line("r-0", SENT_S + 0.010, ttft_ms=500.0, overhead_ms=0.5)
        + access_line("r-1", SENT_S + 0.002, ttft_ms=100.0, overhead_ms=0.2)
    )
    timings = [
        {"id": "r-0", "sent_s": SENT_S, "ttft_ms": 520.0},
        {"id": "r-1", "sent_s": SENT_S, "ttft_ms": 103.0},
        {"id": "r-2", "sent_s": SENT_S, "ttft_ms": None},  # failed: not in the log
    ]
    timeline = decompose(timings, log, 0)
    assert (timeline["requests"], timeline["matched"]) == (3, 2)
    slowest = timeline["slowest_1pct_mean"]
    assert slowest["client_ttft_ms"] == 520.0
    assert slowest["to_gateway_ms"] == pytest.approx(10.0, abs=0.01)
    assert slowest["gateway_own_ms"] == 0.5
    assert slowest["upstream_ms"] == 499.5
    assert slowest["back_to_client_ms"] == pytest.approx(10.0, abs=0.01)


def test_lines_before_the_runs_offset_are_not_read(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    earlier = access_line("r-0", SENT_S, ttft_ms=5.0, overhead_ms=0.1)
    log.write_text(earlier)
    timings = [{"id": "r-0", "sent_s": SENT_S, "ttft_ms": 6.0}]
    assert decompose(timings, log, len(earlier.encode())) == {"requests": 1, "matched": 0}


def test_both_paths_split_at_vllms_queue_entry(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text(
        f"{SENT_S - 5:.6f} INFO vllm Added request chatcmpl-warm-up-1-ab12cd34.\n"
        f"{SENT_S + 0.004:.6f} INFO vllm.entrypoints Received request chatcmpl-gpu-bench-7-0: "
        "params: SamplingParams(n=1), lora_request: None.\n"
        f"(APIServer pid=727) {SENT_S + 0.005:.6f} INFO vllm.v1.engine.async_llm "
        "Added request chatcmpl-gpu-bench-7-0-12ab34cd.\n"
        f"{SENT_S + 0.250:.6f} INFO vllm.v1.engine.async_llm "
        "Added request chatcmpl-gpu-bench-7-1-0f0f0f0f.\n"
    )
    added = queue_entries(log, 0)
    assert added == {
        "gpu-bench-7-0": pytest.approx(SENT_S + 0.005),
        "gpu-bench-7-1": pytest.approx(SENT_S + 0.250),
    }
    timings = [
        {"id": "gpu-bench-7-0", "sent_s": SENT_S, "ttft_ms": 105.0},
        {"id": "gpu-bench-7-1", "sent_s": SENT_S, "ttft_ms": 900.0},
        {"id": "gpu-bench-7-2", "sent_s": SENT_S, "ttft_ms": 50.0},  # not logged by vLLM
    ]
    split = split_at_queue(timings, added)
    assert (split["requests"], split["matched"]) == (3, 2)
    slowest = split["slowest_1pct_mean"]
    assert slowest["to_vllm_queue_ms"] == pytest.approx(250.0, abs=0.01)
    assert slowest["queue_to_client_ms"] == pytest.approx(650.0, abs=0.01)


def test_a_vllm_that_logs_no_requests_gives_no_split(tmp_path: Path) -> None:
    assert queue_entries(tmp_path / "absent.log", 0) == {}
    assert queue_entries(None, 0) == {}
    timings = [{"id": "gpu-bench-7-0", "sent_s": SENT_S, "ttft_ms": 105.0}]
    assert split_at_queue(timings, {}) == {"requests": 1, "matched": 0}


def test_the_gateway_paths_upstream_part_splits_at_vllms_log_lines(tmp_path: Path) -> None:
    gateway_log = tmp_path / "gateway.log"
    gateway_log.write_text(
        access_line("gpu-bench-9-0", SENT_S, ttft_ms=400.0, overhead_ms=0.3)
        + access_line("gpu-bench-8-0", SENT_S, ttft_ms=50.0, overhead_ms=0.3)  # another run
    )
    vllm_log = tmp_path / "vllm.log"
    vllm_log.write_text(
        f"(APIServer pid=1) {SENT_S + 0.120:.6f} INFO vllm Received request "
        "chatcmpl-gpu-bench-9-0: params: SamplingParams(n=1), lora_request: None.\n"
        f"(APIServer pid=1) {SENT_S + 0.130:.6f} INFO vllm Added request "
        "chatcmpl-gpu-bench-9-0-0a1b2c3d.\n"
        f"(APIServer pid=1) {SENT_S + 0.010:.6f} INFO vllm Received request "
        "chatcmpl-gpu-bench-8-0: params: SamplingParams(n=1), lora_request: None.\n"
        f"(APIServer pid=1) {SENT_S + 0.011:.6f} INFO vllm Added request "
        "chatcmpl-gpu-bench-8-0-0a1b2c3d.\n"
    )
    split = frontend_split(gateway_log, vllm_log, lambda rid: rid.startswith("gpu-bench-9-"))
    assert split["matched"] == 1
    slowest = split["slowest_1pct_mean"]
    assert slowest["to_vllm_received_ms"] == pytest.approx(120.0, abs=0.01)
    assert slowest["received_to_added_ms"] == pytest.approx(10.0, abs=0.01)
    assert slowest["added_to_first_event_ms"] == pytest.approx(270.0, abs=0.01)
    assert frontend_split(gateway_log, vllm_log)["matched"] == 2
