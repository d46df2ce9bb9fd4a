"""Usage records as the admin API, the CLI and the console show them: newest first, as JSON
objects, JSON lines or CSV.

Every format has the same fields, those of `UsageRecord` in declaration order, so an export
reads back into the records it came from. As in the daily report, a request refused before its
model was known shows its model as null (an empty CSV cell); in CSV, booleans are `true` and
`false`, and a missing latency or TTFT is an empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.usage.counts import UNRESOLVED_MODEL
from gateway.usage.records import RECORD_FIELDS, UsageRecord

_MODEL = RECORD_FIELDS.index("model")


def newest_first(records: Iterable[UsageRecord]) -> list[UsageRecord]:
    """By the time each request ended, newest first; the record id breaks ties, so that pages
    read one after another neither repeat nor skip a record."""
    return sorted(records, key=lambda record: (record.time, record.record_id), reverse=True)


def record_fields(record: UsageRecord) -> dict[str, Any]:
    """The record as a JSON object."""
    values = list(record.values())
    if values[_MODEL] == UNRESOLVED_MODEL:
        values[_MODEL] = None
    return dict(zip(RECORD_FIELDS, values, strict=True))


def fields_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """Records as `record_fields` gives them (or the admin API's JSON has them): one JSON
    object per line, each line ended by a newline."""
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def fields_csv(rows: Iterable[dict[str, Any]], line_end: str = "\r\n") -> str:
    """Records as for `fields_jsonl`, as CSV with a header row; lines end in CRLF as RFC 4180
    says, or in `line_end`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(RECORD_FIELDS)
    writer.writerows([_csv_cell(row[name]) for name in RECORD_FIELDS] for row in rows)
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
