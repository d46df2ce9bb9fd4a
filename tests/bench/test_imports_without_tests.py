"""Every bench module imports in a copy of the project that has no tests/: the GPU machine
gets gateway/, vllm_server/ and bench/ only, and a benchmark that reached into tests/ failed
there at import (bench/gpu/compare.py, through a helper it shared with the tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bench

REPO_ROOT = Path(bench.__file__).resolve().parents[1]
SHIPPED = ("gateway", "vllm_server", "bench")
# Printed by the child: {module: the last line of its import error}.
IMPORT_ALL = """
import importlib, json, sys, traceback
failures = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc().strip().splitlines()[-1]
leaked = sorted(name for name in sys.modules if name == "tests" or name.startswith("tests."))
print(json.dumps({"failures": failures, "leaked": leaked}))
"""


def bench_modules(root: Path) -> list[str]:
    modules = []
    for path in sorted((root / "bench").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_every_bench_module_imports_without_tests(tmp_path: Path) -> None:
    for folder in SHIPPED:
        shutil.copytree(
            REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *bench_modules(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"failures": {}, "leaked": []}
