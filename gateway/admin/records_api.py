"""`GET /admin/v1/usage/records`: one tenant's requests, record by record, newest first; one
request by its id (a billing dispute), or a period exported as CSV or JSON lines.

The records are kept per tenant (and per day), so the tenant is always given: a request id
alone would mean reading every tenant's records. A request id looked up under another tenant
is not found, like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.admin import ADMIN_PREFIX
from gateway.admin.schemas import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Offset,
    Page,
    RecordId,
    error_responses,
)
from gateway.admin.state import AdminDep
from gateway.admin.usage_api import DAY_PATTERN, _check_day
from gateway.core.errors import BadRequest, NotFoundError
from gateway.usage.backend import RecordFilter
from gateway.usage.export import fields_csv, fields_jsonl, newest_first, record_fields
from gateway.usage.records import UsageRecord

JSONL_TYPE = "application/jsonl"
MEDIA_TYPES = {"csv": "text/csv", "jsonl": JSONL_TYPE}


class UsageRecordOut(BaseModel):
    """One request's record, as the ledger stores it."""

    record_id: str = Field(description="the gateway's own id: what makes a record count once")
    request_id: str = Field(description="the client's x-request-id when sane, else the gateway's")
    time: float = Field(description="unix seconds, UTC: when the request ended")
    tenant_id: str
    key_id: str
    endpoint: str = Field(description="the API surface, e.g. /v1/chat/completions")
    model: str | None = Field(description="the public model name; null: refused before known")
    upstream_model: str | None = Field(description="what vLLM was asked for: base or adapter")
    replica: str | None = Field(description="the vLLM replica's URL")
    stream: bool
    status: int = Field(description="the final HTTP status; 0: the gateway failed before one")
    prompt_tokens: int
    cached_tokens: int = Field(description="of the prompt tokens, served from the prefix cache")
    completion_tokens: int
    latency_ms: float | None = Field(description="until the request ended; null: aborted")
    ttft_ms: float | None = Field(description="streams: until the first event was sent")
    estimated: bool = Field(description="the tokens are an estimate (a stream cut short)")
    aborted: bool = Field(description="stored from the log of a gateway that died mid-request")
    base_model: str | None = Field(description="the tenant's route: its base model")
    adapter: str | None = Field(description="and its LoRA adapter; null: the base model")
    finish_reason: str | None = Field(description="as the answer gave it: stop, length ...")
    safety_action: str | None = Field(description='the strongest taken, e.g. "output:block"')


class UsageRecordPage(Page[UsageRecordOut]):
    """Newest first."""


router = APIRouter(
    prefix=ADMIN_PREFIX, tags=["usage"], responses=error_responses(400, 401, 404, 503)
)


@router.get(
    "/usage/records",
    responses={
        200: {
            "model": UsageRecordPage,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                JSONL_TYPE: {"schema": {"type": "string"}},
            },
            "description": "a JSON page, or every record as CSV (a header row) or JSON lines",
        }
    },
)
async def get_usage_records(
    admin: AdminDep,
    tenant_id: RecordId,
    request_id: RecordId | None = None,
    first_day: Annotated[
        str | None, Query(alias="from", pattern=DAY_PATTERN, description="YYYY-MM-DD, inclusive")
    ] = None,
    last_day: Annotated[
        str | None, Query(alias="to", pattern=DAY_PATTERN, description="YYYY-MM-DD, inclusive")
    ] = None,
    format: Literal["json", "csv", "jsonl"] = "json",
    offset: Offset = 0,
    limit: Annotated[
        int | None,
        Query(ge=1, le=MAX_PAGE, description=f"records per page (JSON: {DEFAULT_PAGE})"),
    ] = None,
) -> Response:
    """The tenant's usage records in the UTC days asked for (all of them if none), newest
    first; with `request_id`, only that request's (404 if the tenant has none: a client that
    reused a request id has several). This instance's latest requests are included; other
    instances' may be up to one flush interval (`usage.flush_interval_s`) behind.

    The JSON is a page (follow `next_offset`); CSV and JSON lines, downloads, hold every
    record unless `limit` is given."""
    _check_day(first_day, "from")
    _check_day(last_day, "to")
    if first_day and last_day and first_day > last_day:
        raise BadRequest(f"from ({first_day}) is after to ({last_day}).", param="from")
    records = await admin.state.ledger.read_records(  # StoreUnavailable: 503
        RecordFilter(tenant_id, first_day, last_day)
    )
    if request_id is not None:
        records = [record for record in records if record.request_id == request_id]
        if not records:
            raise NotFoundError(
                f"No usage record of request '{request_id}' for tenant '{tenant_id}'.",
                "record_not_found",
                "request_id",
            )
    ordered = newest_first(records)
    if format != "json":
        chosen = ordered[offset : None if limit is None else offset + limit]
        rows = [_validated(record).model_dump() for record in chosen]
        body = fields_csv(rows) if format == "csv" else fields_jsonl(rows)
        headers = {"content-disposition": f'attachment; filename="usage-records.{format}"'}
        return Response(body, media_type=MEDIA_TYPES[format], headers=headers)
    page_size = DEFAULT_PAGE if limit is None else limit
    fetched = [_validated(record) for record in ordered[offset : offset + page_size + 1]]
    page = UsageRecordPage.of(fetched, offset, page_size)
    return Response(page.model_dump_json(), media_type="application/json")


def _validated(record: UsageRecord) -> UsageRecordOut:
    """The record as every format shows it: the JSON page, and the CSV and JSON lines, which
    are rendered from the same values (so an export reads back like the pages)."""
    return UsageRecordOut(**record_fields(record))
