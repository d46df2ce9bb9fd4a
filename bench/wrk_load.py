"""Plain (non-streaming) load with wrk: a C client whose own CPU cost stays small next to the
servers it measures, which matters on a 2-core machine where client and servers share cores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.measures import PlainResult
from bench.servers import Target

_SCRIPT = Path(__file__).with_name("wrk_post.lua")
# wrk exits on its own after -d; this only catches a hung client.
_EXIT_GRACE_S = 30


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    """wrk prints its version in the first line of its usage text (and exits 1)."""
    usage = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first_line = usage.stdout.splitlines()[0] if usage.stdout else "wrk (unknown version)"
    return first_line.split(" Copyright")[0].strip()


def run(target: Target, body: bytes, concurrency: int, seconds: int) -> PlainResult:
    """Keep `concurrency` connections busy for `seconds` (wrk counts whole seconds only, and
    runs them all even when a Lua script stops its thread: no request-count mode)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as workdir:
        result_path = Path(workdir) / "result.json"
        env = {
            **os.environ,
            "BENCH_BODY": body.decode(),
            "BENCH_AUTHORIZATION": target.authorization or "",
            "BENCH_RESULT": str(result_path),
        }
        subprocess.run(
            [
                "wrk",
                "--threads",
                "1",
                "--connections",
                str(concurrency),
                "--duration",
                f"{seconds}s",
                "--timeout",
                "30s",
                "--script",
                str(_SCRIPT),
                target.chat_url,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=seconds + _EXIT_GRACE_S,
        )
        raw = json.loads(result_path.read_text())
    return PlainResult(
        client="wrk",
        concurrency=concurrency,
        requests=raw["requests"],
        errors=raw["non_2xx"] + raw["socket_errors"],
        duration_s=raw["duration_us"] / 1e6,
        median_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
    )
