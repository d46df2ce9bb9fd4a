"""The launcher's command building, config loading and process handling, without vLLM.

Process tests run a small stand-in executable in place of `vllm`: a real child process that
records the argv and env it got and answers `/health`, so start/ready/stop run for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import REPO_ROOT, free_port
from vllm_server.launcher import LaunchCommand, VllmConfig, VllmServer, build_command

ADAPTERS = {"tenant-a": "/models/a", "tenant-b": "/models/b", "tenant-c": "/models/c"}


def option(command: LaunchCommand, flag: str) -> str:
    return command.argv[command.argv.index(flag) + 1]


def test_cpu_command_serves_the_model_offline_and_eager() -> None:
    config = VllmConfig(model="/models/base", served_model_name="base", port=9001)
    command = build_command(config)
    assert command.argv[1:3] == ["serve", "/models/base"]
    assert option(command, "--served-model-name") == "base"
    assert option(command, "--port") == "9001"
    assert option(command, "--host") == "127.0.0.1"
    assert "--enforce-eager" in command.argv
    assert command.env == {
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
    }


def test_without_adapters_or_runtime_updating_lora_stays_off() -> None:
    command = build_command(VllmConfig(model="m"))
    assert "--enable-lora" not in command.argv
    assert "--max-loras" not in command.argv
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in command.env


def test_adapters_become_lora_modules_name_equals_path() -> None:
    command = build_command(VllmConfig(model="m", adapters=ADAPTERS, max_lora_rank=8))
    start = command.argv.index("--lora-modules") + 1
    assert command.argv[start : start + 3] == [
        "tenant-a=/models/a",
        "tenant-b=/models/b",
        "tenant-c=/models/c",
    ]
    assert "--enable-lora" in command.argv
    assert option(command, "--max-lora-rank") == "8"


@pytest.mark.parametrize(("max_loras", "expected"), [(1, "4"), (3, "4"), (4, "4"), (6, "6")])
def test_cpu_keeps_one_lora_slot_more_than_the_preloaded_adapters(
    max_loras: int, expected: str
) -> None:
    config = VllmConfig(model="m", adapters=ADAPTERS, max_loras=max_loras)
    assert option(build_command(config), "--max-loras") == expected


def test_gpu_takes_max_loras_as_given_and_no_cpu_settings() -> None:
    config = VllmConfig(model="m", adapters=ADAPTERS, max_loras=3, device="gpu")
    command = build_command(config)
    assert option(command, "--max-loras") == "3"
    assert "--enforce-eager" not in command.argv
    assert "VLLM_CPU_KVCACHE_SPACE" not in command.env
    assert "HF_HUB_OFFLINE" not in command.env


def test_max_cpu_loras_is_never_below_the_lora_slots() -> None:
    config = VllmConfig(model="m", adapters=ADAPTERS, max_loras=2, max_cpu_loras=2)
    assert option(build_command(config), "--max-cpu-loras") == "4"


def test_runtime_updating_enables_lora_and_sets_the_env_flag() -> None:
    command = build_command(VllmConfig(model="m", runtime_lora_updating=True, max_loras=2))
    assert "--enable-lora" in command.argv
    assert option(command, "--max-loras") == "2"
    assert "--lora-modules" not in command.argv
    assert command.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_dtype_max_model_len_and_extra_args_are_passed_last() -> None:
    config = VllmConfig(
        model="m", dtype="float32", max_model_len=512, extra_args=("--enable-prefix-caching",)
    )
    command = build_command(config)
    assert option(command, "--dtype") == "float32"
    assert option(command, "--max-model-len") == "512"
    assert command.argv[-1] == "--enable-prefix-caching"


def test_priority_scheduling_is_passed_and_fcfs_is_left_to_vllm() -> None:
    command = build_command(VllmConfig(model="m", scheduling_policy="priority"))
    assert option(command, "--scheduling-policy") == "priority"
    assert "--scheduling-policy" not in build_command(VllmConfig(model="m")).argv


def test_tracing_sends_vllm_spans_to_the_otlp_http_endpoint() -> None:
    url = "http://127.0.0.1:4318/v1/traces"
    command = build_command(VllmConfig(model="m", otlp_traces_endpoint=url))
    assert option(command, "--otlp-traces-endpoint") == url
    assert command.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    assert command.env["OTEL_SERVICE_NAME"] == "vllm"
    untraced = build_command(VllmConfig(model="m"))
    assert "--otlp-traces-endpoint" not in untraced.argv
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" not in untraced.env


def test_executable_comes_from_config_then_venv_then_next_to_python() -> None:
    explicit = VllmConfig(model="m", vllm_executable="/opt/vllm", venv="/venvs/v")
    assert build_command(explicit).argv[0] == "/opt/vllm"
    assert build_command(VllmConfig(model="m", venv="/venvs/v")).argv[0] == "/venvs/v/bin/vllm"
    next_to_python = str(Path(sys.executable).parent / "vllm")
    assert build_command(VllmConfig(model="m")).argv[0] == next_to_python


def test_yaml_config_loads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "vllm.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            model: /models/base
            served_model_name: llama
            adapters: {tenant-a: /models/a, tenant-b: /models/b}
            max_loras: 3
            max_lora_rank: 8
            max_cpu_loras: 8
            runtime_lora_updating: true
            device: gpu
            dtype: bfloat16
            max_model_len: 4096
            host: 0.0.0.0
            port: 8100
            cpu_kv_cache_gib: 2
            extra_args: [--enable-prefix-caching]
            venv: /venvs/vllm
            otlp_traces_endpoint: http://tempo:4318/v1/traces
            """
        )
    )
    assert VllmConfig.from_yaml(path) == VllmConfig(
        model="/models/base",
        served_model_name="llama",
        adapters={"tenant-a": "/models/a", "tenant-b": "/models/b"},
        max_loras=3,
        max_lora_rank=8,
        max_cpu_loras=8,
        runtime_lora_updating=True,
        device="gpu",
        dtype="bfloat16",
        max_model_len=4096,
        host="0.0.0.0",
        port=8100,
        cpu_kv_cache_gib=2,
        extra_args=("--enable-prefix-caching",),
        venv="/venvs/vllm",
        otlp_traces_endpoint="http://tempo:4318/v1/traces",
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("model: m\nmax_lora: 2\n", "unknown vLLM config keys: max_lora"),
        ("served_model_name: base\n", "needs 'model'"),
        ("model: m\ndevice: tpu\n", "device must be 'cpu' or 'gpu'"),
        ("model: m\nmax_loras: 0\n", "max_loras must be at least 1"),
        ("model: m\nscheduling_policy: lifo\n", "scheduling_policy must be 'fcfs' or"),
        ("- model\n", "expected a mapping"),
    ],
)
def test_yaml_config_errors_name_the_problem(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "vllm.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        VllmConfig.from_yaml(path)


FAKE_VLLM = """\
#!{python}
# Stands in for `vllm serve`: records what it was given, then answers /health.
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

print(json.dumps({{"pid": os.getpid(), "argv": sys.argv[1:], "env": dict(os.environ)}}), flush=True)
port = int(sys.argv[sys.argv.index("--port") + 1])

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def write_executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fake_vllm(tmp_path: Path) -> str:
    return write_executable(tmp_path / "vllm", FAKE_VLLM.format(python=sys.executable))


def test_start_passes_argv_and_env_then_stop_ends_the_process(
    tmp_path: Path, fake_vllm: str
) -> None:
    config = VllmConfig(model="m", adapters=ADAPTERS, port=free_port(), vllm_executable=fake_vllm)
    server = VllmServer.start(config, tmp_path / "vllm.log", timeout=30)
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        received = json.loads(server.log_path.read_text().splitlines()[0])
        assert received["argv"] == build_command(config).argv[1:]
        assert received["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    finally:
        server.stop()
    assert server.process.returncode == -signal.SIGTERM
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health")


def test_start_fails_with_the_log_tail_when_vllm_exits(tmp_path: Path) -> None:
    crashing = write_executable(
        tmp_path / "vllm", "#!/bin/sh\necho 'operator torchvision::nms does not exist'\nexit 3\n"
    )
    config = VllmConfig(model="m", port=free_port(), vllm_executable=crashing)
    with pytest.raises(RuntimeError, match=r"(?s)code 3.*torchvision::nms"):
        VllmServer.start(config, tmp_path / "vllm.log", timeout=30)


def test_start_without_an_executable_says_how_to_install(tmp_path: Path) -> None:
    config = VllmConfig(model="m", venv=str(tmp_path / "missing-venv"))
    with pytest.raises(FileNotFoundError, match=r"install_cpu\.sh"):
        VllmServer.start(config, tmp_path / "vllm.log")


def stop_orphaned_fake(log_path: Path) -> None:
    """If `up` itself had to be killed, its child (our fake vllm) is still ours to stop."""
    if log_path.exists() and log_path.read_text():
        pid = json.loads(log_path.read_text().splitlines()[0])["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_up_command_serves_until_sigterm_and_stops_vllm(tmp_path: Path, fake_vllm: str) -> None:
    port = free_port()
    config_path = tmp_path / "vllm.yaml"
    config_path.write_text(f"model: m\nport: 1\nvllm_executable: {fake_vllm}\n")
    script = (
        "import argparse, sys\n"
        "from vllm_server import launcher\n"
        "parser = argparse.ArgumentParser()\n"
        "launcher.add_arguments(parser)\n"
        "sys.exit(launcher.run(parser.parse_args(sys.argv[1:])))\n"
    )
    argv = [sys.executable, "-c", script, "--config", str(config_path), "--port", str(port)]
    argv += ["--log", str(tmp_path / "vllm.log"), "--ready-timeout", "30"]
    up = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert up.stdout is not None
        lines = [up.stdout.readline() for _ in range(3)]
        assert lines[1].startswith(f"vLLM is ready at http://127.0.0.1:{port}"), lines
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
            stop_orphaned_fake(tmp_path / "vllm.log")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health")
