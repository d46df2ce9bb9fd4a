"""`python -m bench.clients`: every call of calls.py against vLLM direct and the gateways.

Starts real vLLM CPU (unless --vllm-url names a running one), the gateway of --before-commit
from a git worktree and the gateway of this checkout, runs each call against each column,
prints one line per call, writes bench/results/clients.md and .json, and stops what it started.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# before any client is imported: no network look-ups, no traces posted to OpenAI
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench.clients import servers
from bench.clients.calls import CALLS
from bench.clients.report import Results, counts, lost, write
from bench.clients.runner import Column, run_call
from bench.processes import ServerProcess

COLUMNS = ("direct", "before", "after")
CLIENT_PACKAGES = (
    "openai",
    "openai-agents",
    "langchain-openai",
    "anthropic",
    "langchain-anthropic",
    "litellm",
    "llama-index-llms-openai-like",
    "instructor",
    "pydantic-ai-slim",
)
DEFAULT_COMMAND = "make clients-matrix   # = .venv-clients/bin/python -m bench.clients"


def tree_state() -> str:
    """This checkout's commit, and whether the working tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(servers.REPO_ROOT), *args], capture_output=True, text=True
        ).stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "gateway") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def versions() -> dict[str, str]:
    found = {}
    for package in CLIENT_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "missing"
    return found


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument(
        "--columns", default=",".join(COLUMNS), help="comma-separated, of: direct,before,after"
    )
    parser.add_argument("--only", default="", help="run only calls whose id contains this")
    parser.add_argument("--before-commit", default="213829b", help="the 'before' gateway")
    parser.add_argument("--before-dir", type=Path, default=Path("/tmp/gw-before"))
    parser.add_argument("--vllm-url", default="", help="a running vLLM (else one is started)")
    parser.add_argument("--out", type=Path, default=servers.REPO_ROOT / "bench/results/clients")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def print_row(index: int, total: int, call_id: str, results: Results) -> None:
    cells = []
    for name, outcome in results[call_id].items():
        state = "ok" if outcome.ok else f"FAIL {outcome.error_type}: {outcome.error[:70]}"
        cells.append(f"{name} {state}")
    print(f"[{index:3}/{total}] {call_id}\n        " + "\n        ".join(cells), flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wanted = [name for name in args.columns.split(",") if name]
    unknown = set(wanted) - set(COLUMNS)
    if unknown:
        raise SystemExit(f"unknown columns: {', '.join(sorted(unknown))}")
    calls = [call for call in CALLS if args.only in call.id]
    log_dir = Path(tempfile.mkdtemp(prefix="clients-matrix-"))
    print(f"{len(calls)} calls x {len(wanted)} columns; server logs in {log_dir}", flush=True)
    started: list[ServerProcess | servers.Gateway] = []
    made_worktree = False
    columns: list[Column] = []
    try:
        if args.vllm_url:
            vllm_url = args.vllm_url.rstrip("/")
        else:
            vllm = servers.start_vllm(log_dir)
            started.append(vllm)
            vllm_url = vllm.url
        print(f"vLLM at {vllm_url}", flush=True)
        if "direct" in wanted:
            columns.append(
                Column("direct", vllm_url, "unused", servers.VLLM_MODEL, "vLLM 0.32 CPU direct")
            )
        if "before" in wanted:
            made_worktree = servers.ensure_worktree(args.before_dir, args.before_commit)
            source = servers.gateway_source_file(servers.GATEWAY_PYTHON, args.before_dir)
            if not source.startswith(str(args.before_dir)):
                raise SystemExit(f"the 'before' gateway would import {source}")
            before = servers.start_gateway("before", args.before_dir, vllm_url, log_dir)
            started.append(before)
            note = f"gateway at {args.before_commit}, in front of it"
            columns.append(Column("before", before.url, before.api_key, servers.PUBLIC_MODEL, note))
        if "after" in wanted:
            after = servers.start_gateway("after", servers.REPO_ROOT, vllm_url, log_dir)
            started.append(after)
            note = f"gateway of this working tree ({tree_state()}), in front of it"
            columns.append(Column("after", after.url, after.api_key, servers.PUBLIC_MODEL, note))
        results: Results = {}
        for index, call in enumerate(calls, 1):
            results[call.id] = {column.name: run_call(call, column) for column in columns}
            print_row(index, len(calls), call.id, results)
    finally:
        for server in reversed(started):
            server.stop()
        if made_worktree:
            servers.remove_worktree(args.before_dir)
    tally = counts(calls, columns, results)
    print("\nworks: " + ", ".join(f"{name} {n}/{len(calls)}" for name, n in tally.items()))
    if "direct" in tally and len(columns) > 1:
        last = columns[-1].name
        for call in lost(calls, results, "direct", last):
            outcome = results[call.id][last]
            print(f"  direct ok, {last} fails: {call.id}: {outcome.error_type}: {outcome.error}")
    if not args.no_write:
        command = DEFAULT_COMMAND if not argv else "python -m bench.clients " + " ".join(argv)
        meta = {
            "command": command,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "versions": versions(),
        }
        for path in write(args.out, calls, columns, results, meta):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
