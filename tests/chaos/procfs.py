"""A process's memory and open file descriptors, read from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessSample:
    rss_bytes: int
    open_fds: int


def sample(pid: int) -> ProcessSample:
    with open(f"/proc/{pid}/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return ProcessSample(rss_kib * 1024, len(os.listdir(f"/proc/{pid}/fd")))


def descendants(pid: int) -> list[int]:
    """The PIDs of every process under `pid` (children, theirs ...), read now."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as children:
            for child in map(int, children.read().split()):
                found += [child, *descendants(child)]
    return found


def growth(first: ProcessSample, last: ProcessSample) -> float:
    """RSS growth from `first` to `last`, as a share of `first` (0.1 = 10 %)."""
    return (last.rss_bytes - first.rss_bytes) / first.rss_bytes


def mib(sampled: ProcessSample) -> float:
    return round(sampled.rss_bytes / 2**20, 1)
