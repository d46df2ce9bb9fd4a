"""The matrix's results as a Markdown page and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.clients.calls import Call
from bench.clients.runner import Column, Outcome

Results = dict[str, dict[str, Outcome]]  # call id -> column name -> outcome
NOTES = [
    "- Direct, the model is vLLM's `base`; through a gateway it is the tenant's public name "
    "`acme-chat` (mapped to `base`), and calls that check the answer's model name want that.",
    "- vLLM's own Responses store is off by default (`VLLM_ENABLE_RESPONSES_API_STORE`), so "
    "`store`/`retrieve`/`previous_response_id`/`background` calls fail direct.",
    "- The model has random weights: a tool call comes only when `tool_choice` forces one "
    "(guided decoding keeps it schema-valid), and it never stops by itself, so openai-agents' "
    "Responses calls pass vLLM's `stop` extension (else every answer ends `incomplete`, which "
    "the Agents SDK raises on).",
    "- llama-index-llms-openai and instructor are installed with `--no-deps` next to openai 3.x "
    "(bench/clients/requirements-nodeps.txt says why).",
]


def counts(calls: list[Call], columns: list[Column], results: Results) -> dict[str, int]:
    return {c.name: sum(results[call.id][c.name].ok for call in calls) for c in columns}


def lost(calls: list[Call], results: Results, baseline: str, column: str) -> list[Call]:
    """Calls that work in `baseline` and fail in `column`."""
    return [
        call for call in calls if results[call.id][baseline].ok and not results[call.id][column].ok
    ]


def cell(outcome: Outcome) -> str:
    if outcome.ok:
        return "ok"
    text = f"✗ {outcome.error_type}: {outcome.error}"[:140]
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    calls: list[Call],
    columns: list[Column],
    results: Results,
    meta: dict[str, Any],
) -> str:
    total = len(calls)
    tally = counts(calls, columns, results)
    lines = [
        "# Client matrix: the same client calls against vLLM direct and through the gateway",
        "",
        f"Measured {meta['finished']} on this machine (real vLLM CPU, the tiny random-weight "
        "model of `vllm-server up --demo`, tool calling on). Re-run with:",
        "",
        "```bash",
        meta["command"],
        "```",
        "",
        "A call works when it returns without an exception and with a non-empty answer of the "
        "right kind (text, a schema-valid tool call, a token count). Client retries are off.",
        "",
        *NOTES,
        "",
        "| column | what | works |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {c.note} | **{tally[c.name]}** of {total} |" for c in columns]
    lines += ["", "Clients: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    names = [c.name for c in columns]
    if "direct" in names:
        for column in names[1:]:
            missing = lost(calls, results, "direct", column)
            lines.append(f"Work direct, fail through `{column}`: {len(missing)}.")
        lines.append("")
    lines += [
        "| # | client | call | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for index, call in enumerate(calls, 1):
        row = [str(index), call.client, call.name.replace("|", "\\|")]
        row += [cell(results[call.id][name]) for name in names]
        lines.append("| " + " | ".join(row) + " |")
    if "direct" in names and len(names) > 1:
        last = names[-1]
        missing = lost(calls, results, "direct", last)
        lines += ["", f"## Work direct, fail through `{last}`", ""]
        lines += [
            f"- {call.id}: `{results[call.id][last].error_type}`: {results[call.id][last].error}"
            for call in missing
        ] or ["- none"]
        greedy = [c for c in calls if "temperature 0" in c.name]
        differ = [
            call
            for call in greedy
            if results[call.id]["direct"].ok
            and results[call.id][last].ok
            and results[call.id][last].answer != results[call.id]["direct"].answer
        ]
        lines += ["", "## Greedy calls (temperature 0) whose answer differs from direct", ""]
        lines += [f"- {call.id}" for call in differ] or [
            f"- none of {len(greedy)}: the same text through `{last}` as direct"
        ]
        gained = lost(calls, results, last, "direct")
        lines += ["", f"## Work through `{last}`, fail direct", ""]
        lines += [
            f"- {call.id}: direct `{results[call.id]['direct'].error_type}`: "
            f"{results[call.id]['direct'].error}"
            for call in gained
        ] or ["- none"]
    return "\n".join(lines) + "\n"


def write(
    out: Path,
    calls: list[Call],
    columns: list[Column],
    results: Results,
    meta: dict[str, Any],
) -> tuple[Path, Path]:
    """Write `out`.md and `out`.json; their paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out.with_suffix(".md"), out.with_suffix(".json")
    md_path.write_text(markdown(calls, columns, results, meta))
    data = {
        **meta,
        "columns": [
            {
                "name": c.name,
                "note": c.note,
                "model": c.model,
                "works": counts_one(c, calls, results),
            }
            for c in columns
        ],
        "total": len(calls),
        "calls": [
            {
                "client": call.client,
                "name": call.name,
                "results": {c.name: results[call.id][c.name].as_dict() for c in columns},
            }
            for call in calls
        ],
    }
    json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return md_path, json_path


def counts_one(column: Column, calls: list[Call], results: Results) -> int:
    return sum(results[call.id][column.name].ok for call in calls)
