"""What the leak benchmarks share (bench/soak.py, bench/disconnects.py): the requests they
send, the failures they count, the gateway's open file descriptors, a scratch directory for
the servers, and the lines of their reports."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.rss import _descendants_and_self, tree_rss_kib
from bench.servers import MODEL

PROMPT = [{"role": "user", "content": "Say something about gateways."}]
STREAM_END = b"data: [DONE]\n\n"
MAX_FAILURES_KEPT = 20

Verdict = tuple[str, str, bool]  # what is asked, what was seen, whether it held


def chat_body(max_tokens: int, *, stream: bool) -> bytes:
    """A chat request for MODEL generating exactly `max_tokens` tokens, as JSON."""
    body: dict[str, object] = {"model": MODEL, "messages": PROMPT, "ignore_eos": True}
    body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


@dataclass
class FailureCounts:
    """Failed requests: how many, and the first few reasons for the report."""

    errors: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.errors += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(reason)


@dataclass(frozen=True)
class GatewaySample:
    """The gateway's process tree, `elapsed_s` into the load; a benchmark adds its counters."""

    elapsed_s: float
    rss_kib: int
    open_fds: int


def gateway_figures(elapsed_s: float, pid: int) -> tuple[float, int, int]:
    """A GatewaySample's fields for the process tree of `pid`, read now."""
    return round(elapsed_s, 1), tree_rss_kib(pid), open_fds(pid)


def open_fds(root_pid: int) -> int:
    """Open file descriptors of `root_pid`'s process tree (sockets, pipes, files)."""
    count = 0
    for pid in _descendants_and_self(root_pid):
        try:
            count += sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
    return count


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A directory for the servers' files and logs, removed after the block; kept (and named
    on stderr) when the block fails."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    print(f"{time.strftime('%H:%M:%S')}  starting; server logs in {workdir}", flush=True)
    try:
        yield workdir
    except BaseException:
        print(f"{name} aborted; server logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir)


def verdict_line(verdict: Verdict) -> str:
    name, seen, passed = verdict
    return f"{'PASS' if passed else 'FAIL'}  {name}: {seen}"


def run_lines(command: str, machine: dict[str, object]) -> list[str]:
    """The report's first lines: when, what and where it ran (bench/machine.py's `describe`)."""
    return [
        f"- Date: {machine['date']}",
        f"- Command: `{command}`",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}",
    ]


def criteria_lines(verdicts: list[Verdict], failures: list[str]) -> list[str]:
    """The report's criteria section, and the first failures when there were any."""
    lines = ["## Criteria", "", *(f"- {verdict_line(verdict)}" for verdict in verdicts)]
    if failures:
        lines += ["", "First failures:", *(f"- `{failure}`" for failure in failures)]
    return lines
