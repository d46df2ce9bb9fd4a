"""`GET /admin/v1/usage`: the gateway's usage ledger, filtered and grouped, as JSON or CSV."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import (
    DEFAULT_PAGE,
    MAX_PAGE,
    ModelName,
    Offset,
    RecordId,
    error_responses,
    paged,
)
from gateway.admin.state import AdminDep
from gateway.core.errors import BadRequest
from gateway.usage.backend import UsageFilter
from gateway.usage.report import (
    DEFAULT_GROUP_BY,
    GROUP_COLUMNS,
    parse_group_by,
    report_csv,
    summarize,
)

DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
ALL_GROUPS = DEFAULT_GROUP_BY


class UsageRow(BaseModel):
    """The grouped columns (only those), then the counters."""

    month: str | None = Field(None, description="YYYY-MM, UTC: the monthly rollup")
    day: str | None = Field(None, description="YYYY-MM-DD, UTC")
    tenant_id: str | None = None
    key_id: str | None = None
    model: str | None = Field(None, description="null: refused before its model was known")
    requests: int = Field(description="all requests, errors and rejected ones included")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int = Field(description="answered 5xx: the gateway or the model server failed")
    rejected: int = Field(description="answered 4xx: refused (limits, unknown model, ...)")


class UsageTotals(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int
    rejected: int


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    first_day: str | None = Field(alias="from")
    last_day: str | None = Field(alias="to")
    group_by: list[str]
    rows: list[UsageRow]
    totals: UsageTotals = Field(description="over all the rows, not only this page's")
    next_offset: int | None = Field(description="pass as `offset` for the next page; null: done")


router = APIRouter(prefix=ADMIN_PREFIX, tags=["usage"], responses=error_responses(400, 401, 503))


@router.get(
    "/usage",
    responses={
        200: {
            "model": UsageReport,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "JSON, or CSV with a header row when format=csv",
        }
    },
)
async def get_usage(
    admin: AdminDep,
    tenant_id: RecordId | None = None,
    key_id: RecordId | None = None,
    model: ModelName | None = None,
    first_day: Annotated[
        str | None, Query(alias="from", pattern=DAY_PATTERN, description="YYYY-MM-DD, inclusive")
    ] = None,
    last_day: Annotated[
        str | None, Query(alias="to", pattern=DAY_PATTERN, description="YYYY-MM-DD, inclusive")
    ] = None,
    group_by: Annotated[
        str,
        Query(
            max_length=100,
            description=f"comma list of {', '.join(GROUP_COLUMNS)}; empty: totals only",
        ),
    ] = ALL_GROUPS,
    format: Literal["json", "csv"] = "json",
    offset: Offset = 0,
    limit: Annotated[
        int | None,
        Query(ge=1, le=MAX_PAGE, description=f"rows per page; JSON: {DEFAULT_PAGE} if not given"),
    ] = None,
) -> Response:
    """Requests, tokens, errors and rejections per UTC day, tenant, key and model, summed
    over what `group_by` leaves out. This instance's latest requests are included; other
    instances' may be up to one flush interval (`usage.flush_interval_s`) behind.

    The JSON is a page of rows (follow `next_offset`); the CSV, a download, has every row
    unless `limit` is given."""
    try:
        groups = parse_group_by(group_by)
    except ValueError as error:
        raise BadRequest(str(error), param="group_by") from None
    _check_day(first_day, "from")
    _check_day(last_day, "to")
    if first_day and last_day and first_day > last_day:
        raise BadRequest(f"from ({first_day}) is after to ({last_day}).", param="from")
    usage_filter = UsageFilter(tenant_id, key_id, model, first_day, last_day)
    rows = await admin.state.ledger.read(usage_filter)  # StoreUnavailable: 503
    summary: dict[str, Any] = summarize(rows, groups)
    every_row = summary["rows"]
    if format == "csv":
        summary["rows"] = every_row[offset : None if limit is None else offset + limit]
        headers = {"content-disposition": 'attachment; filename="usage.csv"'}
        return Response(report_csv(summary), media_type="text/csv", headers=headers)
    page_size = DEFAULT_PAGE if limit is None else limit
    summary["rows"], next_offset = paged(
        every_row[offset : offset + page_size + 1], offset, page_size
    )
    report = UsageReport(first_day=first_day, last_day=last_day, next_offset=next_offset, **summary)
    body = report.model_dump_json(by_alias=True, exclude_unset=True)
    return Response(body, media_type="application/json")


def _check_day(day: str | None, param: str) -> None:
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise BadRequest(f"{param}: {day} is not a date.", param=param) from None
