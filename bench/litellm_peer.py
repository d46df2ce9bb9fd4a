"""LiteLLM's proxy as the peer to beat, installed and configured the way peers.md measured it.

It lives in its own virtual environment (`.venv-litellm`, git-ignored) because its pinned
dependency tree must not leak into the gateway's; the harness creates it on first use.
Newer releases need a `litellm-proxy` package the registry here lacks, hence the pin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bench.processes import REPO_ROOT

VERSION = "1.105.7"
VENV = REPO_ROOT / ".venv-litellm"
MASTER_KEY = "sk-bench-master-key"
READY_PATH = "/health/liveliness"
# Without it LiteLLM fetches its model price map from the internet at start-up.
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def installed_version() -> str | None:
    """The litellm version in the peer's venv, or None when the venv is missing or broken."""
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_installed() -> str:
    """Create the peer's venv with the pinned proxy when it is missing; return its version."""
    if installed_version() != VERSION:
        print(f"installing litellm[proxy]=={VERSION} into {VENV} (a few minutes) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={VERSION}"],
            check=True,
        )
    version = installed_version()
    if version != VERSION:
        raise RuntimeError(f"{VENV} holds litellm {version}, expected {VERSION}")
    return version


def write_config(workdir: Path, upstream_url: str, model: str) -> Path:
    """One model routed to the upstream's /v1, master key only, no database."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": f"{upstream_url}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def argv(config: Path, port: int) -> list[str]:
    return [
        str(VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
