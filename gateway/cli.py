"""`vllm-gateway`: run the gateway, and manage tenants, keys and the audit trail."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvicorn

from gateway.admin.adapters_cli import add_commands as add_adapter_commands
from gateway.admin.cli import add_commands
from gateway.admin.reconcile_cli import add_commands as add_reconcile_commands
from gateway.admin.records_cli import add_commands as add_record_commands
from gateway.admin.usage_cli import add_commands as add_usage_commands
from gateway.observability.exposition import metrics_process
from gateway.observability.log_format import uvicorn_log_config
from gateway.postgres.commands import add_commands as add_database_commands
from gateway.quickstart import new_admin_key, provision_demo_when_up, standin_upstream
from gateway.settings import CONFIG_ENV_VAR, Settings, load_settings
from gateway.workers import serve_workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help=f"YAML settings file (or ${CONFIG_ENV_VAR})")
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (server.workers)")
    serve.add_argument(
        "--upstream", help="vLLM base URL (upstream.url); unset: quickstart with the stand-in"
    )
    serve.set_defaults(func=serve_command)
    add_commands(sub)
    add_adapter_commands(sub)
    add_usage_commands(sub)
    add_record_commands(sub)
    add_reconcile_commands(sub)
    add_database_commands(sub)
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def serve_command(args: argparse.Namespace) -> int:
    # Overrides travel as environment variables so that every uvicorn worker sees them.
    for env_name, value in (
        ("VLLM_GATEWAY_SERVER__HOST", args.host),
        ("VLLM_GATEWAY_SERVER__PORT", args.port),
        ("VLLM_GATEWAY_SERVER__WORKERS", args.workers),
        ("VLLM_GATEWAY_UPSTREAM__URL", args.upstream),
        (CONFIG_ENV_VAR, args.config),
    ):
        if value is not None:
            os.environ[env_name] = str(value)
    settings = load_settings()
    if settings.upstream.url is not None or settings.upstream.replicas:
        _run(settings)
        return 0
    # uvicorn re-raises SIGTERM once drained; exiting by SystemExit instead lets the stand-in
    # child be stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with standin_upstream() as upstream:
        os.environ["VLLM_GATEWAY_UPSTREAM__URL"] = upstream
        admin_keys = settings.admin.all_keys()
        if not admin_keys:
            admin_keys = [new_admin_key()]
            os.environ["VLLM_GATEWAY_ADMIN__KEYS"] = json.dumps(admin_keys)
        settings = load_settings()
        url = f"http://{settings.server.host}:{settings.server.port}"
        provision_demo_when_up(url, admin_keys[0], upstream)
        _run(settings)
    return 0


# On SIGTERM the gateway itself ends the streams still running after server.drain_timeout_s
# (with an error event, gateway/pipeline/relay.py); uvicorn's own deadline, which cancels
# whatever is left, comes this much later.
_CANCEL_AFTER_DRAIN_S = 2
_APP = "gateway.app:create_app"


def _run(settings: Settings) -> None:
    """One worker: uvicorn's server. Several: `gateway.workers`, which spreads connections
    evenly over them (uvicorn's own supervisor leaves that to the kernel's wake-ups)."""
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.server.host,
        "port": settings.server.port,
        "workers": settings.server.workers,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        # a component failing to start (a database behind its migrations) stops the gateway;
        # uvicorn's default, "auto", would serve without the app's components
        "lifespan": "on",
        "log_config": uvicorn_log_config(settings.observability),
        "timeout_graceful_shutdown": math.ceil(settings.server.drain_timeout_s)
        + _CANCEL_AFTER_DRAIN_S,
    }
    with metrics_process(settings):
        if settings.server.workers > 1:
            serve_workers(uvicorn.Config(_APP, **options))
        else:
            uvicorn.run(_APP, **options)


if __name__ == "__main__":
    raise SystemExit(main())
