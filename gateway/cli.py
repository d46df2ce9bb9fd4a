"""`vllm-gateway`: run the gateway (and, with no upstream configured, the stand-in beside it)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from gateway.settings import CONFIG_ENV_VAR, Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help=f"YAML settings file (or ${CONFIG_ENV_VAR})")
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (server.workers)")
    serve.add_argument("--upstream", help="vLLM base URL (upstream.url); unset: start the stand-in")
    args = parser.parse_args(argv)
    return serve_command(args)


def serve_command(args: argparse.Namespace) -> int:
    # Overrides travel as environment variables so that every uvicorn worker sees them.
    for env_name, value in (
        ("VLLM_GATEWAY_SERVER__HOST", args.host),
        ("VLLM_GATEWAY_SERVER__PORT", args.port),
        ("VLLM_GATEWAY_SERVER__WORKERS", args.workers),
        ("VLLM_GATEWAY_UPSTREAM__URL", args.upstream),
    ):
        if value is not None:
            os.environ[env_name] = str(value)
    settings = load_settings(args.config)
    if settings.upstream.url is not None:
        _run(settings)
        return 0
    with _standin() as url:
        os.environ["VLLM_GATEWAY_UPSTREAM__URL"] = url
        settings = load_settings(args.config)
        _print_usage(settings, url)
        _run(settings)
    return 0


def _run(settings: Settings) -> None:
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_graceful_shutdown=int(settings.server.drain_timeout_s),
    )


@contextmanager
def _standin() -> Iterator[str]:
    """The vLLM stand-in as a child process on a free loopback port, stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--port", str(port)]
    process = subprocess.Popen([*argv, "--lora", "tenant-a=/adapters/tenant-a"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the stand-in upstream exited with {process.returncode}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the stand-in upstream did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _print_usage(settings: Settings, upstream: str) -> None:
    base = f"http://{settings.server.host}:{settings.server.port}/v1"
    print(
        f"No upstream configured: serving the vLLM stand-in at {upstream} (not a real model).\n"
        f"Call the gateway:\n"
        f"  curl {base}/chat/completions -H 'content-type: application/json' \\\n"
        f'    -d \'{{"model": "base", "messages": [{{"role": "user", "content": "hi"}}]}}\'\n'
        f"  python -c \"import openai; c = openai.OpenAI(base_url='{base}', api_key='none'); "
        f"print(c.chat.completions.create(model='base', messages=[{{'role': 'user', "
        f"'content': 'hi'}}]).choices[0].message.content)\"",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
