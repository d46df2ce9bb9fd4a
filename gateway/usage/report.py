"""Stored rows summed into the groups a caller asks for, as JSON-ready dicts or CSV.

The JSON rows and the CSV rows have the same columns: the grouped ones, then the counters.
A request refused before its model was known shows its model as null (an empty CSV cell).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.usage.counts import UNRESOLVED_MODEL, UsageCounts, UsageKey

# group_by names and the row columns they add
GROUP_COLUMNS = {
    "month": "month",
    "day": "day",
    "tenant": "tenant_id",
    "key": "key_id",
    "model": "model",
}
# unless asked otherwise: the daily rows (a month is their sum)
DEFAULT_GROUP_BY = "day,tenant,key,model"
COUNTER_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "errors",
    "rejected",
)


def parse_group_by(text: str) -> tuple[str, ...]:
    """`day,model` -> ("day", "model"); an empty text groups everything into one row."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUP_COLUMNS]
    if unknown:
        raise ValueError(
            f"group_by: unknown {', '.join(unknown)}; use a comma list of "
            f"{', '.join(GROUP_COLUMNS)}."
        )
    return tuple(dict.fromkeys(names))


def summarize(
    rows: Iterable[tuple[UsageKey, UsageCounts]], group_by: Sequence[str]
) -> dict[str, Any]:
    """{"group_by", "rows", "totals"}; rows sorted by their group columns."""
    columns = [GROUP_COLUMNS[name] for name in group_by]
    groups: dict[tuple[str, ...], UsageCounts] = {}
    totals = UsageCounts()
    for key, counts in rows:
        group = tuple(_cell(key, column) for column in columns)
        groups.setdefault(group, UsageCounts()).merge(counts)
        totals.merge(counts)
    return {
        "group_by": list(group_by),
        "rows": [
            {**_group_cells(columns, group), **_counter_cells(counts)}
            for group, counts in sorted(groups.items())
        ],
        "totals": _counter_cells(totals),
    }


def _cell(key: UsageKey, column: str) -> str:
    """A row's value in a group column: the monthly rollup is the days' (YYYY-MM)."""
    return key.day[:7] if column == "month" else str(getattr(key, column))


def _group_cells(columns: list[str], group: tuple[str, ...]) -> dict[str, str | None]:
    return {
        column: None if column == "model" and value == UNRESOLVED_MODEL else value
        for column, value in zip(columns, group, strict=True)
    }


def _counter_cells(counts: UsageCounts) -> dict[str, int]:
    return {
        "requests": counts.requests,
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.prompt_tokens + counts.completion_tokens,
        "errors": counts.errors,
        "rejected": counts.rejected,
    }


def report_columns(report: dict[str, Any]) -> list[str]:
    return [GROUP_COLUMNS[name] for name in report["group_by"]] + list(COUNTER_COLUMNS)


def report_csv(report: dict[str, Any], line_end: str = "\r\n") -> str:
    """A `summarize` result (or the admin API's JSON) as CSV with a header row; lines end
    in CRLF as RFC 4180 says, or in `line_end`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, report_columns(report), lineterminator=line_end)
    writer.writeheader()
    writer.writerows(report["rows"])
    return out.getvalue()
