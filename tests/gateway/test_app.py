"""The application's lifespan: what the gateway does once per process at startup."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tests.fixtures.in_process import FakeVllm, in_process_gateway


def frozen_at_startup(tmp_path: str) -> tuple[int, int]:
    """In a fresh process: the objects gc.freeze() holds before and once the app started."""

    async def start() -> int:
        async with in_process_gateway(FakeVllm(), Path(tmp_path)):
            return gc.get_freeze_count()

    before = gc.get_freeze_count()
    return before, asyncio.run(start())


def test_the_startup_heap_is_kept_out_of_the_collectors_sight(tmp_path: Path) -> None:
    """Under load a full collection then walks only what requests made, not every module,
    setting and compiled rule the gateway loaded (bench/results/gc-pauses.md)."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        before, after = pool.submit(frozen_at_startup, str(tmp_path)).result(timeout=120)
    assert before == 0
    assert after > 10_000
