"""Resident memory of a process and its descendants, read from /proc.

The whole tree counts because a server may fork workers; /proc/PID/task/*/children is not
available on every kernel, so children are found by scanning each process's parent id.
"""

from __future__ import annotations

from pathlib import Path

_PROC = Path("/proc")


def tree_rss_kib(root_pid: int) -> int:
    """Sum of VmRSS (KiB) over `root_pid` and every process below it."""
    return sum(_vm_rss_kib(pid) for pid in _descendants_and_self(root_pid))


def _descendants_and_self(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name sits in parentheses and may contain spaces: parse after the last ')'.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def _vm_rss_kib(pid: int) -> int:
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
