"""The application's factory: what the gateway does once per process before it serves."""

from __future__ import annotations

import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gateway.app import create_app


def frozen_by_the_factory(tmp_path: str) -> tuple[int, int]:
    """In a fresh process: the objects gc.freeze() holds before and once uvicorn's factory
    built the app."""
    os.environ["VLLM_GATEWAY_STORE__SQLITE_PATH"] = str(Path(tmp_path) / "gateway.db")
    os.environ["VLLM_GATEWAY_UPSTREAM__URL"] = "http://127.0.0.1:9"  # never dialled here
    before = gc.get_freeze_count()
    create_app()
    return before, gc.get_freeze_count()


def test_the_imported_heap_is_kept_out_of_the_collectors_sight(tmp_path: Path) -> None:
    """Under load a full collection then walks only what requests made, not every module,
    class and function the gateway imported (bench/results/gc-pauses.md)."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        before, after = pool.submit(frozen_by_the_factory, str(tmp_path)).result(timeout=120)
    assert before == 0
    assert after > 10_000
