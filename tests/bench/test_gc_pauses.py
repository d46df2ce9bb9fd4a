"""bench/gc_pauses.py's probe: a process started with bench/gc_probe on its PYTHONPATH logs
its collections, and the benchmark reads back those after a run began."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gc_pauses import PROBE, pauses_of

COLLECT = """
import gc
garbage = []
for _ in range(200_000):
    cell = []
    cell.append(cell)  # a cycle: only the collector frees it
    garbage.append(cell)
del garbage
gc.collect()
gc.freeze()
print(gc.get_freeze_count())
"""


def run_probed(log_prefix: Path, no_freeze: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROBE),
        "GC_PAUSES_LOG": str(log_prefix),
        "GC_PAUSES_NO_FREEZE": no_freeze,
    }
    done = subprocess.run(
        [sys.executable, "-c", COLLECT], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_probed_process_logs_its_full_collection(tmp_path: Path) -> None:
    started = time.time()
    assert int(run_probed(tmp_path / "run", "0")) > 0
    pauses = pauses_of(tmp_path / "run", started)
    assert any(generation == 2 and ms >= 1.0 for generation, ms in pauses)
    assert pauses_of(tmp_path / "run", time.time() + 1) == []  # none after the run


def test_the_run_before_the_freeze_freezes_nothing(tmp_path: Path) -> None:
    assert run_probed(tmp_path / "run", "1") == "0"
