"""The gateway's garbage-collection pauses under the fairness benchmark's noisy load: a full
collection stops the event loop, and every request in the process waits it out.

    .venv/bin/python -m bench.gc_pauses             # about 3 minutes; writes bench/results/

One gateway process (the fair queue on, keys in the Redis at 127.0.0.1:6379) in front of the
stand-in, the three quiet and one noisy tenant of bench/fairness.py for 30 s, `--repeats`
times as it is and as before it froze its imported heap (gc.freeze() made a no-op,
alternating, so both see the same machine). bench/gc_probe/sitecustomize.py, on the gateway's
PYTHONPATH, times each collection from the interpreter's own gc callbacks; pauses during
startup (before the first request) are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.fairness import NOISY, QUIET, Load, gateway_routes, run
from bench.processes import REPO_ROOT, free_port, running_server
from gateway.settings import FairQueueSettings

RESULTS = Path(__file__).parent / "results"
PROBE = Path(__file__).parent / "gc_probe"
BEFORE, NOW = "before (imported heap not frozen)", "now (imported heap frozen)"


def pauses_of(log_prefix: Path, since: float) -> list[tuple[int, float]]:
    """(generation, ms) of every pause logged by the processes writing under `log_prefix`
    after the epoch time `since`."""
    found = []
    for path in log_prefix.parent.glob(log_prefix.name + ".*"):
        for line in path.read_text().splitlines():
            at, generation, pause_ms = line.split()
            if float(at) >= since:
                found.append((int(generation), float(pause_ms)))
    return found


def one_run(upstream: str, load: Load, freeze: bool, workdir: Path, index: int) -> dict[str, float]:
    log_prefix = workdir / f"run-{index}"
    os.environ["GC_PAUSES_LOG"] = str(log_prefix)
    os.environ["GC_PAUSES_NO_FREEZE"] = "0" if freeze else "1"
    with gateway_routes(upstream, load, 1, 1) as routes:
        started = time.time()
        asyncio.run(run(routes, load, [*QUIET, NOISY], True, None))
        pauses = pauses_of(log_prefix, started)
    full = sorted(ms for generation, ms in pauses if generation == 2)
    return {
        "longest_ms": max((ms for _, ms in pauses), default=0.0),
        "longest_full_ms": full[-1] if full else 0.0,
        "full_collections": len(full),
        "paused_ms_total": round(sum(ms for _, ms in pauses), 1),
        "pauses_over_10ms": sum(ms > 10 for _, ms in pauses),
    }


def markdown(runs: dict[str, list[dict[str, float]]], command: str) -> str:
    lines = [
        "# Garbage-collection pauses in the gateway under load",
        "",
        f"Re-run: `{command}`",
        "",
        "One gateway process, the fairness benchmark's load (3 quiet tenants at 9 req/s, a noisy "
        "one at 90 req/s, 30 s, budget 64 in flight: 1.33x the stand-in's capacity); pauses of "
        "1 ms or more after startup, timed by the interpreter's gc callbacks "
        "(bench/gc_probe/sitecustomize.py). Runs alternate, so both rules see the same machine.",
        "",
        "| gateway | run | longest pause (ms) | longest full collection (ms) | full collections "
        "| pauses over 10 ms | paused in all (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, results in runs.items():
        for number, row in enumerate(results, 1):
            lines.append(
                f"| {name} | {number} | {row['longest_ms']} | {row['longest_full_ms']} | "
                f"{row['full_collections']} | {row['pauses_over_10ms']} | "
                f"{row['paused_ms_total']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "gc-pauses")
    args = parser.parse_args()
    defaults = FairQueueSettings()
    load = Load(
        64,
        500.0,
        20.0,
        24,
        9.0,
        10.0,
        30.0,
        5.0,
        5.0,
        defaults.reserved_share,
        defaults.reserve_per_extra_process,
        defaults.active_window_s,
        defaults.holding_window_s,
        1,
    )
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PROBE), str(REPO_ROOT)])
    workdir = Path(tempfile.mkdtemp(prefix="bench-gc-pauses-"))
    port = free_port()
    argv = [sys.executable, "-m", "vllm_server.cli", "standin", "--port", str(port)]
    argv += ["--ttft-ms", str(load.ttft_ms), "--itl-ms", str(load.itl_ms)]
    runs: dict[str, list[dict[str, float]]] = {BEFORE: [], NOW: []}
    with running_server(argv, port, workdir / "standin.log") as standin:
        for index in range(args.repeats):
            for name, freeze in ((BEFORE, False), (NOW, True)):
                result = one_run(standin.url, load, freeze, workdir, 2 * index + freeze)
                runs[name].append(result)
                print(name, result, flush=True)
    command = "python -m bench.gc_pauses " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(runs, command.strip()))
    print(markdown(runs, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
