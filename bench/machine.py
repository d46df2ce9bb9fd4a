"""Where and with what a run happened, so that a result can be compared with the right peers."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path

from bench.processes import REPO_ROOT


def describe() -> dict[str, object]:
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_mem_total_kib() / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(litellm_version: str, plain_client: str) -> dict[str, str]:
    return {
        "vllm-gateway": f"{importlib.metadata.version('vllm-gateway')} ({_git_revision()})",
        "litellm": litellm_version,
        "aiohttp (stream client)": importlib.metadata.version("aiohttp"),
        "plain-request client": plain_client,
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _git_revision() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if head.returncode != 0:
        return "no commit yet"
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"git {head.stdout.strip()}{' + local changes' if dirty else ''}"
