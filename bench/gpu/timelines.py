"""Where each request's time to first token went through the gateway, request by request.

The client (`vllm bench serve`) knows when it sent a request and when its first token came;
the gateway's access log knows, for the same request (the client's x-request-id, which the
gateway keeps), when it arrived (the line's time minus its latency), its own time before the
upstream call (`overhead_ms`) and when it sent the first event (`ttft_ms`). Both clocks are the
machine's wall clock, read to the millisecond in the log. Per request:

    client TTFT = to gateway      (sent -> arrival: the client's own queue, connect, accept,
                                   the worker's event loop picking it up)
                + gateway own     (overhead_ms: auth, limits, routing, the upstream call made)
                + upstream        (ttft_ms - overhead_ms: vLLM's queue and prefill, the first
                                   chunk back to the gateway)
                + back to client  (what is left: the first event relayed to the client)

Percentiles of each part over the run, and each part's mean over the slowest 1% of requests
(by client TTFT), say which part the tail comes from.

vLLM, started with `--enable-log-requests` and a logging format that stamps each line with its
epoch time (bench/gpu/vllm-logging.json), logs "Added request <id>" when a request enters its
engine's queue; its id holds the client's x-request-id on both paths (the gateway forwards it).
So, on both paths alike:

    client TTFT = to vLLM's queue  (sent -> added: the client, the gateway if any, vLLM's API
                                    server parsing and tokenizing)
                + queue to client  (added -> first token at the client: vLLM's queue and
                                    prefill, the relay back)
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.measures import percentile

PARTS = ("to_gateway_ms", "gateway_own_ms", "upstream_ms", "back_to_client_ms")
QUEUE_PARTS = ("to_vllm_queue_ms", "queue_to_client_ms")
TAIL_SHARE = 0.01
FRONTEND_PARTS = ("to_vllm_received_ms", "received_to_added_ms", "added_to_first_event_ms")
# "(APIServer pid=727) <epoch seconds> INFO ... Added request chatcmpl-<x-request-id>-<8 hex>."
# (vLLM puts the process's name before each line of its child processes' output); "Received
# request chatcmpl-<x-request-id>: params ..." comes first, once its API server has parsed,
# templated and tokenized the request.
_LOGGED = re.compile(
    rb"^(?:\(\S+ pid=\d+\) )?(\d+\.\d+) .*(Added|Received) request \S*?(gpu-bench-\d+-\d+)"
)


def decompose(timings: list[dict[str, Any]], gateway_log: Path, offset: int) -> dict[str, Any]:
    """The run's timelines: `timings` from the client (RunResult.timings), the access log's
    lines from `offset` on."""
    logged = _access_lines(gateway_log, offset)
    rows = []
    for timing in timings:
        line = logged.get(timing["id"])
        if line is None or timing["ttft_ms"] is None or line.get("ttft_ms") is None:
            continue
        arrival_s = datetime.fromisoformat(line["ts"]).timestamp() - line["latency_ms"] / 1e3
        to_gateway = (arrival_s - timing["sent_s"]) * 1e3
        own = line["overhead_ms"]
        upstream = line["ttft_ms"] - own
        rows.append(
            {
                "client_ttft_ms": timing["ttft_ms"],
                "to_gateway_ms": to_gateway,
                "gateway_own_ms": own,
                "upstream_ms": upstream,
                "back_to_client_ms": timing["ttft_ms"] - to_gateway - line["ttft_ms"],
            }
        )
    return _summarised(len(timings), rows, PARTS)


def _summarised(
    requests: int, rows: list[dict[str, float]], parts: tuple[str, ...]
) -> dict[str, Any]:
    summary: dict[str, Any] = {"requests": requests, "matched": len(rows)}
    if not rows:
        return summary
    for part in ("client_ttft_ms", *parts):
        values = [row[part] for row in rows]
        summary[part] = {"p50": percentile(values, 50), "p99": percentile(values, 99)}
    tail = max(1, int(len(rows) * TAIL_SHARE))
    slowest = sorted(rows, key=lambda row: row["client_ttft_ms"])[-tail:]
    summary["slowest_1pct_mean"] = {
        part: sum(row[part] for row in slowest) / len(slowest)
        for part in ("client_ttft_ms", *parts)
    }
    return summary


def queue_entries(vllm_log: Path | None, offset: int) -> dict[str, float]:
    """Each benchmark request's entry into vLLM's queue (epoch seconds), from the log's lines
    from `offset` on; empty when vLLM did not log its requests."""
    return _vllm_moments(vllm_log, offset)[b"Added"]


def _vllm_moments(vllm_log: Path | None, offset: int) -> dict[bytes, dict[str, float]]:
    moments: dict[bytes, dict[str, float]] = {b"Added": {}, b"Received": {}}
    if vllm_log is None or not vllm_log.exists():
        return moments
    with vllm_log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            match = _LOGGED.match(raw)
            if match:
                moments[match.group(2)][match.group(3).decode()] = float(match.group(1))
    return moments


def frontend_split(
    gateway_log: Path, vllm_log: Path, keep: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """The gateway path's upstream part split at vLLM's log lines, from the two servers' logs
    alone (no client timings needed): the gateway's arrival -> vLLM's "Received" (the gateway's
    own work and vLLM's API server reading, templating and tokenizing), -> "Added" (into its
    engine's queue), -> the gateway's first event (vLLM's queue and prefill, the relay). With
    `keep`, only the requests whose x-request-id it keeps."""
    moments = _vllm_moments(vllm_log, 0)
    received, added = moments[b"Received"], moments[b"Added"]
    rows = []
    for request_id, line in _access_lines(gateway_log, 0).items():
        if request_id not in received or request_id not in added or line.get("ttft_ms") is None:
            continue
        if keep is not None and not keep(request_id):
            continue
        arrival_s = datetime.fromisoformat(line["ts"]).timestamp() - line["latency_ms"] / 1e3
        to_received = (received[request_id] - arrival_s) * 1e3
        to_added = (added[request_id] - arrival_s) * 1e3
        rows.append(
            {
                "client_ttft_ms": line["ttft_ms"],  # the gateway's, for the tail's ordering
                "to_vllm_received_ms": to_received,
                "received_to_added_ms": to_added - to_received,
                "added_to_first_event_ms": line["ttft_ms"] - to_added,
            }
        )
    return _summarised(len(rows), rows, FRONTEND_PARTS)


def split_at_queue(timings: list[dict[str, Any]], added: dict[str, float]) -> dict[str, Any]:
    """One path's TTFTs split at the moment each request entered vLLM's queue."""
    rows = []
    for timing in timings:
        entered = added.get(timing["id"])
        if entered is None or timing["ttft_ms"] is None:
            continue
        to_queue = (entered - timing["sent_s"]) * 1e3
        rows.append(
            {
                "client_ttft_ms": timing["ttft_ms"],
                "to_vllm_queue_ms": to_queue,
                "queue_to_client_ms": timing["ttft_ms"] - to_queue,
            }
        )
    return _summarised(len(timings), rows, QUEUE_PARTS)


def markdown(rows: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """A section for the report: one line per gateway run, (streams per path, its timelines)."""
    if not rows:
        return []
    lines = [
        "## Where the gateway path's TTFT went (bench/gpu/timelines.py)",
        "",
        "| streams per path | matched requests | client TTFT p50 / p99 ms | to gateway p50 / p99 "
        "| gateway own p50 / p99 | upstream p50 / p99 | back to client p50 / p99 "
        "| slowest 1%: TTFT = to gateway + own + upstream + back (means, ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for concurrency, timeline in rows:
        if not timeline.get("matched"):
            lines.append(f"| {concurrency} | 0 of {timeline.get('requests', 0)} | | | | | | |")
            continue
        cells = [
            f"{timeline['matched']} of {timeline['requests']}",
            *_percentile_cells(timeline, PARTS),
        ]
        tail = timeline["slowest_1pct_mean"]
        cells.append(
            f"{tail['client_ttft_ms']:.0f} = " + " + ".join(f"{tail[part]:.0f}" for part in PARTS)
        )
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "To gateway: the client's send to the gateway's arrival (the access line's time minus "
        "its latency; the log has milliseconds); gateway own: its overhead before the upstream "
        "call; upstream: its TTFT minus that (vLLM's queue and prefill); back to client: the "
        "rest of the client's TTFT.",
        "",
    ]
    return lines


def _access_lines(gateway_log: Path, offset: int) -> dict[str, dict[str, Any]]:
    lines: dict[str, dict[str, Any]] = {}
    if not gateway_log.exists():
        return lines
    with gateway_log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            if not raw.startswith(b"{"):
                continue
            entry = json.loads(raw)
            if entry.get("event") == "request" and entry.get("status") == 200:
                lines[entry["request_id"]] = entry
    return lines


def queue_markdown(rows: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
    """A section for the report: one line per path and run, (streams per path, path label,
    split_at_queue's summary); nothing when vLLM logged no request."""
    rows = [row for row in rows if row[2].get("matched")]
    if not rows:
        return []
    lines = [
        "## Both paths split at vLLM's queue (bench/gpu/timelines.py)",
        "",
        "| streams per path | path | matched requests | client TTFT p50 / p99 ms "
        "| to vLLM's queue p50 / p99 | queue to client p50 / p99 "
        "| slowest 1%: TTFT = to queue + queue to client (means, ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for concurrency, label, split in rows:
        tail = split["slowest_1pct_mean"]
        cells = [
            label,
            f"{split['matched']} of {split['requests']}",
            *_percentile_cells(split, QUEUE_PARTS),
            f"{tail['client_ttft_ms']:.0f} = "
            + " + ".join(f"{tail[part]:.0f}" for part in QUEUE_PARTS),
        ]
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "To vLLM's queue: the client's send to vLLM's \"Added request\" log line (its engine's "
        "queue entry, after its API server parsed and tokenized the request); queue to client: "
        "the rest of the client's TTFT (vLLM's queue and prefill, the first chunk relayed back).",
        "",
    ]
    return lines


def frontend_markdown(rows: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """A section for the report: one line per gateway run, (streams per path, frontend_split's
    summary); nothing when vLLM logged no request."""
    rows = [row for row in rows if row[1].get("matched")]
    if not rows:
        return []
    lines = [
        "## The gateway path's upstream part at vLLM's log lines (bench/gpu/timelines.py)",
        "",
        '| streams per path | requests | gateway TTFT p50 / p99 ms | to vLLM\'s "Received" '
        'p50 / p99 | "Received" to "Added" p50 / p99 | "Added" to first event p50 / p99 |',
        "|---|---|---|---|---|---|",
    ]
    for concurrency, split in rows:
        cells = [
            str(split["matched"]),
            *_percentile_cells(split, FRONTEND_PARTS),
        ]
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "From the gateway's arrival: to vLLM's \"Received request\" line (the gateway's own work, "
        "the loopback hop, vLLM's API server reading, templating and tokenizing the request), "
        "then to its \"Added request\" line (into the engine's queue), then to the gateway's "
        "first event (vLLM's queue and prefill, the first chunk relayed).",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Re-derive the frontend split from a run's saved logs, one row per run (lane seeds)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu.timelines",
        description="the gateway path's upstream part at vLLM's log lines, from saved logs",
    )
    parser.add_argument("gateway_log", type=Path)
    parser.add_argument("vllm_log", type=Path)
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("STREAMS", "SEEDS"),
        default=[],
        help="a run: its streams per path and its gateway lanes' seeds, e.g. 256 1030,1031",
    )
    args = parser.parse_args(argv)
    rows = []
    for streams, seeds in args.run:
        prefixes = tuple(f"gpu-bench-{seed}-" for seed in seeds.split(","))
        split = frontend_split(args.gateway_log, args.vllm_log, _starting_with(prefixes))
        rows.append((int(streams), split))
    print("\n".join(frontend_markdown(rows)))
    return 0


def _percentile_cells(summary: dict[str, Any], parts: tuple[str, ...]) -> list[str]:
    return [
        f"{summary[part]['p50']:.1f} / {summary[part]['p99']:.1f}"
        for part in ("client_ttft_ms", *parts)
    ]


def _starting_with(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda request_id: request_id.startswith(prefixes)


if __name__ == "__main__":
    raise SystemExit(main())
