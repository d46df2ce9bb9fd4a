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

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.measures import percentile

PARTS = ("to_gateway_ms", "gateway_own_ms", "upstream_ms", "back_to_client_ms")
QUEUE_PARTS = ("to_vllm_queue_ms", "queue_to_client_ms")
TAIL_SHARE = 0.01
# "<epoch seconds> INFO ... Added request chatcmpl-<x-request-id>-<8 hex>."
_ADDED = re.compile(rb"^(\d+\.\d+) .*Added request \S*?(gpu-bench-\d+-\d+)")


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
    added: dict[str, float] = {}
    if vllm_log is None or not vllm_log.exists():
        return added
    with vllm_log.open("rb") as log:
        log.seek(offset)
        for raw in log:
            match = _ADDED.match(raw)
            if match:
                added[match.group(2).decode()] = float(match.group(1))
    return added


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
            *(
                f"{timeline[part]['p50']:.1f} / {timeline[part]['p99']:.1f}"
                for part in ("client_ttft_ms", *PARTS)
            ),
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
            *(
                f"{split[part]['p50']:.1f} / {split[part]['p99']:.1f}"
                for part in ("client_ttft_ms", *QUEUE_PARTS)
            ),
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
