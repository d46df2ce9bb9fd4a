"""Loaded by every Python process started with this folder on PYTHONPATH (bench/gc_pauses.py
puts it there for the gateway it starts): while GC_PAUSES_LOG names a file, each garbage
collection of 1 ms or more is appended to `<that file>.<pid>` as "<epoch s> <generation>
<ms>". GC_PAUSES_NO_FREEZE=1 makes gc.freeze() do nothing: the run before the gateway froze
its imported heap."""

import gc
import os
import time

_LOG = os.environ.get("GC_PAUSES_LOG")
if os.environ.get("GC_PAUSES_NO_FREEZE") == "1":
    gc.freeze = lambda: None

if _LOG:
    _started = [0.0]

    def _timed(phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            _started[0] = now
            return
        pause_ms = (now - _started[0]) * 1000
        if pause_ms >= 1.0:
            with open(f"{_LOG}.{os.getpid()}", "a") as log:
                log.write(f"{time.time():.3f} {info['generation']} {pause_ms:.1f}\n")

    gc.callbacks.append(_timed)
