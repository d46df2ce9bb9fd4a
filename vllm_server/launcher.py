"""Start the stock vLLM OpenAI server with multi-LoRA, from a YAML config or as a CPU demo.

The gateway never imports vLLM: it talks to this server over HTTP. This module turns a small
typed config into the exact `vllm serve` command line and environment (a pure function, so it
is testable without vLLM), starts it, waits for `/health`, and stops it by PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from vllm_server import tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL_DIR = REPO_ROOT / ".cache" / "tiny-model"
Device = Literal["cpu", "gpu"]
SchedulingPolicy = Literal["fcfs", "priority"]
# Tool calling for the tiny model. Its chat template has no tool format and its tokenizer no
# tool-call tokens, so the parser is `pythonic`: it needs neither, leaves plain text as
# content (`auto`), and lets `tool_choice` "required" and named go through vLLM's JSON-schema
# guided decoding (parsers with a structural tag, such as hermes or llama3_json, constrain
# the output to their own markup instead). Compact JSON: with whitespace allowed, a
# random-weight model pads the arguments until max_tokens and never closes the call.
TINY_MODEL_TOOL_ARGS = (
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "pythonic",
    "--structured-outputs-config",
    '{"backend": "xgrammar", "disable_any_whitespace": true}',
)


def default_venv() -> Path:
    """The vLLM venv that `install_cpu.sh` creates: env VLLM_VENV, else `<repo>/.venv-vllm`."""
    return Path(os.environ.get("VLLM_VENV", REPO_ROOT / ".venv-vllm"))


def venv_python(venv: Path) -> Path:
    """The vLLM venv's python, or a FileNotFoundError that says how to create the venv."""
    python = venv / "bin" / "python"
    if not (python.is_file() and (venv / "bin" / "vllm").is_file()):
        raise FileNotFoundError(
            f"no vLLM venv at {venv}: create it with `vllm_server/install_cpu.sh {venv}` "
            "(`make test` does this)"
        )
    return python


@dataclass(frozen=True)
class VllmConfig:
    """What to serve and how; paths are used as given (relative ones against the cwd)."""

    model: str
    served_model_name: str = "base"
    adapters: dict[str, str] = field(default_factory=dict)  # name -> adapter dir
    max_loras: int = 1
    max_lora_rank: int = 16
    max_cpu_loras: int | None = None
    runtime_lora_updating: bool = False
    device: Device = "cpu"
    dtype: str = "auto"
    max_model_len: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    cpu_kv_cache_gib: int = 1
    scheduling_policy: SchedulingPolicy = "fcfs"  # "priority": requests' `priority` counts
    # vLLM's OpenTelemetry spans (one per request, continuing the traceparent it is sent) go
    # to this OTLP/HTTP traces URL, e.g. http://tempo:4318/v1/traces; None: no tracing
    otlp_traces_endpoint: str | None = None
    extra_args: tuple[str, ...] = ()
    vllm_executable: str | None = None  # wins over `venv`
    venv: str | None = None  # else `vllm` next to the running python

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', not {self.device!r}")
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise ValueError(
                f"scheduling_policy must be 'fcfs' or 'priority', not {self.scheduling_policy!r}"
            )
        if self.max_loras < 1:
            raise ValueError(f"max_loras must be at least 1, not {self.max_loras}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> VllmConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown vLLM config keys: {', '.join(unknown)}")
        if "model" not in data:
            raise ValueError("vLLM config needs 'model' (a model directory or hub id)")
        values = dict(data)
        values["adapters"] = {str(k): str(v) for k, v in (data.get("adapters") or {}).items()}
        values["extra_args"] = tuple(str(arg) for arg in data.get("extra_args") or ())
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: Path) -> VllmConfig:
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping of vLLM settings")
        return cls.from_mapping(data)

    @property
    def lora_enabled(self) -> bool:
        return bool(self.adapters) or self.runtime_lora_updating


@dataclass(frozen=True)
class LaunchCommand:
    argv: list[str]
    env: dict[str, str]  # added to the parent's environment


def lora_slots(config: VllmConfig) -> int:
    """`--max-loras` to pass: on CPU, at least one more than the adapters loaded at once.

    Why: vLLM 0.32's CPU LoRA path has a bug (upstream PRs #48421 / #49656, still open).
    Requests with no adapter carry LoRA index -1, which is then used as a Python index, so
    base-model requests batched together with LoRA requests silently get the adapter in the
    LAST slot. Keeping one slot more than the adapters ever loaded keeps that slot empty, so
    base requests stay base. Preloaded adapters are counted here; adapters loaded at runtime
    must fit within `max_loras - 1` on CPU, which the config's `max_loras` has to allow for.
    """
    if config.device == "cpu":
        return max(config.max_loras, len(config.adapters) + 1)
    return config.max_loras


def vllm_executable(config: VllmConfig) -> str:
    if config.vllm_executable:
        return config.vllm_executable
    if config.venv:
        return str(Path(config.venv) / "bin" / "vllm")
    return str(Path(sys.executable).parent / "vllm")


def build_command(config: VllmConfig) -> LaunchCommand:
    """The `vllm serve` argv and the environment it needs; touches nothing."""
    argv = [vllm_executable(config), "serve", config.model]
    argv += ["--served-model-name", config.served_model_name]
    argv += ["--host", config.host, "--port", str(config.port), "--dtype", config.dtype]
    if config.max_model_len is not None:
        argv += ["--max-model-len", str(config.max_model_len)]
    if config.scheduling_policy != "fcfs":
        argv += ["--scheduling-policy", config.scheduling_policy]
    env = {"VLLM_NO_USAGE_STATS": "1"}
    if config.otlp_traces_endpoint is not None:
        argv += ["--otlp-traces-endpoint", config.otlp_traces_endpoint]
        # vLLM exports over gRPC unless told otherwise; the gateway's collectors speak HTTP
        env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
        env["OTEL_SERVICE_NAME"] = "vllm"  # else "unknown_service" beside the gateway's
    if config.device == "cpu":
        # CUDA graphs do not exist on CPU; the KV cache size is set in GiB by env, not flags.
        argv.append("--enforce-eager")
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.cpu_kv_cache_gib)
        env["HF_HUB_OFFLINE"] = "1"
    if config.lora_enabled:
        slots = lora_slots(config)
        argv += ["--enable-lora", "--max-loras", str(slots)]
        argv += ["--max-lora-rank", str(config.max_lora_rank)]
        if config.max_cpu_loras is not None:
            # vLLM refuses a CPU adapter cache smaller than the slots.
            argv += ["--max-cpu-loras", str(max(config.max_cpu_loras, slots))]
        if config.adapters:
            argv.append("--lora-modules")
            argv += [f"{name}={path}" for name, path in config.adapters.items()]
    if config.runtime_lora_updating:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    argv += config.extra_args
    return LaunchCommand(argv, env)


def client_url(config: VllmConfig) -> str:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
    return f"http://{host}:{config.port}"


@dataclass
class VllmServer:
    """A running `vllm serve` child process, with its output in `log_path`."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(cls, config: VllmConfig, log_path: Path, timeout: float = 300.0) -> VllmServer:
        """Start vLLM and return once `/health` answers 200; on failure, raise with its log."""
        command = build_command(config)
        if not Path(command.argv[0]).is_file():
            raise FileNotFoundError(
                f"no vLLM executable at {command.argv[0]}; install one with "
                "`vllm_server/install_cpu.sh VENV_DIR` and set `venv` (or vllm_executable)"
            )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **command.env},
            )
        server = cls(process, client_url(config), log_path)
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"vLLM exited with code {self.process.returncode} before it was ready "
                        f"(log: {self.log_path}):\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
        raise TimeoutError(
            f"vLLM not ready at {self.url} after {timeout:.0f}s (log: {self.log_path}):\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM to vLLM's PID (it stops its own engine children), SIGKILL after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def demo_config(venv: Path, port: int) -> VllmConfig:
    """The tiny offline model (built on first use) with three adapters and tool calling,
    on CPU."""
    tiny_model.build_with(venv_python(venv), TINY_MODEL_DIR)
    adapters = {name: str(path) for name, path in tiny_model.adapter_dirs(TINY_MODEL_DIR).items()}
    return VllmConfig(
        model=str(tiny_model.base_dir(TINY_MODEL_DIR)),
        adapters=adapters,
        max_loras=len(adapters) + 1,
        max_lora_rank=8,
        runtime_lora_updating=True,
        dtype="float32",  # greedy output then matches HF exactly; bfloat16 does not
        max_model_len=512,
        port=port,
        venv=str(venv),
        extra_args=TINY_MODEL_TOOL_ARGS,
    )


def usage_hint(config: VllmConfig, url: str) -> str:
    model = next(iter(config.adapters), config.served_model_name)
    body = f'{{"model": "{model}", "prompt": "def main():", "max_tokens": 16, "temperature": 0}}'
    lines = [
        f"vLLM is ready at {url}",
        f"  models:      curl -s {url}/v1/models",
        f"  completion:  curl -s {url}/v1/completions -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}",
    ]
    if config.runtime_lora_updating:
        load = '{"lora_name": "NAME", "lora_path": "ADAPTER_DIR"}'
        lines.append(
            f"  add adapter: curl -s {url}/v1/load_lora_adapter "
            f"-H 'Content-Type: application/json' -d {shlex.quote(load)}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML file with VllmConfig fields")
    source.add_argument(
        "--demo", action="store_true", help="serve the tiny offline model and 3 adapters on CPU"
    )
    parser.add_argument("--port", type=int, help="overrides the config's port (demo: 8000)")
    parser.add_argument(
        "--venv", type=Path, help="vLLM venv (demo default: $VLLM_VENV or <repo>/.venv-vllm)"
    )
    parser.add_argument("--log", type=Path, help="vLLM's output (default: a file under /tmp)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument(
        "--otlp-traces-endpoint",
        help="send vLLM's OpenTelemetry spans to this OTLP/HTTP traces URL "
        "(e.g. http://127.0.0.1:4318/v1/traces)",
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _config_from_args(args: argparse.Namespace) -> VllmConfig:
    if args.demo:
        config = demo_config(args.venv or default_venv(), args.port or 8000)
    else:
        config = VllmConfig.from_yaml(args.config)
    overrides = {
        "port": args.port,
        "venv": str(args.venv) if args.venv else None,
        "otlp_traces_endpoint": args.otlp_traces_endpoint,
    }
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})


def run(args: argparse.Namespace) -> int:
    try:
        config = _config_from_args(args)
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as error:
        print(error, file=sys.stderr)
        return 2
    log_path = args.log or Path(tempfile.gettempdir()) / f"vllm-server-{config.port}.log"
    # Stop vLLM on SIGTERM as on Ctrl-C: never leave the child running.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"starting vLLM (log: {log_path})", flush=True)
    try:
        server = VllmServer.start(config, log_path, args.ready_timeout)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, RuntimeError, TimeoutError) as error:
        print(error, file=sys.stderr)
        return 1
    print(usage_hint(config, server.url) + "\nCtrl-C stops it.", flush=True)
    try:
        code = server.process.wait()
    except KeyboardInterrupt:
        server.stop()
        return 0
    print(f"vLLM exited with code {code}:\n{server.log_tail()}", file=sys.stderr)
    return code
