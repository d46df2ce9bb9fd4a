"""Every module of the gateway imports on its own, in a fresh interpreter: no import cycle is
hidden by the order in which the suite happens to import things."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gateway

PACKAGE_DIR = Path(gateway.__file__).parent


def gateway_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def import_alone(module: str) -> str | None:
    """None, or the last line of the error that importing `module` alone raised."""
    run = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, timeout=120, check=False
    )
    return run.stderr.decode().strip().splitlines()[-1] if run.returncode else None


def test_every_module_imports_alone() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        modules = gateway_modules()
        errors = dict(zip(modules, pool.map(import_alone, modules), strict=True))
    failures = {module: error for module, error in errors.items() if error is not None}
    assert not failures, failures
