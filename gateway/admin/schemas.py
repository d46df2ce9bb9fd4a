"""The admin API's request and response bodies, and their conversion to and from the records.

Requests forbid unknown fields, so a typo answers 400 naming it instead of being ignored.
Responses are built from the tenancy dataclasses by attribute (``from_attributes``); the key
response has no field for a secret hash, so a hash cannot leak through it by accident.
Bounds on every number and string keep whatever a client sends storable as-is (SQLite
integers and orjson's are 64-bit; counts stay below 2**53, so the console's JavaScript numbers
hold them exactly; NaN and infinity fail the bounds). Text refuses NUL characters (400)
rather than storing them: readers built on C strings (terminals showing the CLI's tables,
CSV tools, vLLM's file paths) end a value at its first NUL and would see another value.

Every list answers a page: `offset` and `limit` in, `items` and `next_offset` out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from fastapi import Query
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    computed_field,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.core.fields import Name, NoNul
from gateway.tenancy.models import ApiKey, Limits, ModelRoute, Tenant

MAX_LIMIT = 10**15
MAX_DURATION_S = 10 * 365 * 86400.0
MAX_TIMESTAMP = 4102444800.0  # 2100-01-01: far enough for an expiry, small enough to store
MAX_ID_CHARS = 128
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_OFFSET = 10**9


ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/][A-Za-z0-9._:/@+-]{0,255}$")]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), NoNul]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=1024), NoNul]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=64)]
LimitValue = Annotated[int, Field(ge=0, le=MAX_LIMIT)]
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, description="unix seconds")]
Duration = Annotated[float, Field(gt=0, le=MAX_DURATION_S, description="seconds")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="records to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="records per page")]
Record = TypeVar("Record")
Item = TypeVar("Item", bound=BaseModel)


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Patch(RequestBody):
    """A partial update: fields left out stay as they are.

    Only fields whose null means something ("none", "never", "all models") may be sent as
    null; the rest would have no record value to become.
    """

    not_nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _reject_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_nullable:
            raise PydanticCustomError("null", "may not be null")
        return value


class LimitsBody(RequestBody):
    """Limits; in a patch, only the limits given change and null removes one."""

    requests_per_minute: LimitValue | None = None
    tokens_per_minute: LimitValue | None = None
    max_concurrent: LimitValue | None = None
    tokens_per_day: LimitValue | None = None
    tokens_per_month: LimitValue | None = None

    def to_record(self) -> Limits:
        return Limits(**self.model_dump())

    def merged_into(self, limits: Limits) -> Limits:
        return replace(limits, **self.model_dump(exclude_unset=True))


class ModelRouteBody(RequestBody):
    base_model: ModelName = Field(description="the model name vLLM serves")
    adapter: ModelName | None = Field(None, description="a LoRA adapter loaded in vLLM")

    def to_record(self) -> ModelRoute:
        return ModelRoute(self.base_model, self.adapter)


Models = Annotated[
    dict[ModelName, ModelRouteBody],
    Field(max_length=256, description="public model name -> base model and adapter"),
]


def routes_to_record(models: dict[str, ModelRouteBody]) -> dict[str, ModelRoute]:
    return {name: route.to_record() for name, route in models.items()}


class TenantCreate(RequestBody):
    name: Name
    models: Models = {}
    default_model: ModelName | None = Field(None, description="one of `models`")
    limits: LimitsBody = Field(default_factory=LimitsBody)
    safety_policy: Name | None = None
    metadata: Metadata = {}

    def to_record(self, tenant_id: str) -> Tenant:
        return Tenant(
            id=tenant_id,
            name=self.name,
            models=routes_to_record(self.models),
            default_model=self.default_model,
            limits=self.limits.to_record(),
            safety_policy=self.safety_policy,
            metadata=dict(self.metadata),
        )


class TenantUpdate(Patch):
    """Replaces `models` and `metadata` whole; merges `limits` limit by limit."""

    not_nullable = frozenset({"name", "models", "limits", "metadata", "enabled"})

    name: Name | None = None
    models: Models | None = None
    default_model: ModelName | None = None
    limits: LimitsBody | None = None
    safety_policy: Name | None = None
    metadata: Metadata | None = None
    enabled: bool | None = None

    def applied_to(self, tenant: Tenant) -> Tenant:
        given = self.model_fields_set
        changed = replace(tenant, updated_at=time.time())
        for field in given & {"name", "default_model", "safety_policy", "enabled"}:
            setattr(changed, field, getattr(self, field))
        if self.models is not None:
            changed.models = routes_to_record(self.models)
        if self.limits is not None:
            changed.limits = self.limits.merged_into(tenant.limits)
        if self.metadata is not None:
            changed.metadata = dict(self.metadata)
        return changed


class KeyCreate(RequestBody):
    tenant_id: RecordId
    name: Name
    expires_at: Timestamp | None = Field(None, description="unix seconds; or give expires_in_s")
    expires_in_s: Duration | None = None
    allowed_models: list[ModelName] | None = Field(
        None, max_length=256, description="a subset of the tenant's models; null: all of them"
    )
    limits: LimitsBody = Field(default_factory=LimitsBody)
    metadata: Metadata = {}

    def expiry(self, now: float) -> float | None:
        if self.expires_in_s is not None:
            return now + self.expires_in_s
        return self.expires_at

    def to_record(self, key_id: str, prefix: str, secret_hash: str, now: float) -> ApiKey:
        return ApiKey(
            id=key_id,
            tenant_id=self.tenant_id,
            name=self.name,
            prefix=prefix,
            secret_hash=secret_hash,
            created_at=now,
            expires_at=self.expiry(now),
            allowed_models=self.allowed_models,
            limits=self.limits.to_record(),
            metadata=dict(self.metadata),
        )


class KeyUpdate(Patch):
    """`expires_at: null` makes the key never expire; `allowed_models: null` allows all."""

    not_nullable = frozenset({"name", "limits", "metadata"})

    name: Name | None = None
    limits: LimitsBody | None = None
    allowed_models: list[ModelName] | None = Field(None, max_length=256)
    expires_at: Timestamp | None = None
    metadata: Metadata | None = None

    def applied_to(self, key: ApiKey) -> ApiKey:
        changed = replace(key)
        for field in self.model_fields_set & {"name", "allowed_models", "expires_at"}:
            setattr(changed, field, getattr(self, field))
        if self.limits is not None:
            changed.limits = self.limits.merged_into(key.limits)
        if self.metadata is not None:
            changed.metadata = dict(self.metadata)
        return changed


class KeyRotate(RequestBody):
    grace_period_s: float = Field(
        0.0, ge=0, le=MAX_DURATION_S, description="how long the old secret keeps working"
    )


class ResponseBody(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def paged(fetched: Sequence[Record], offset: int, limit: int) -> tuple[list[Record], int | None]:
    """The page in `fetched` (the up to `limit + 1` records read from `offset` on), and the
    offset of the next page: the record past the page only tells that there is one."""
    return list(fetched[:limit]), offset + limit if len(fetched) > limit else None


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_offset: int | None = Field(description="pass as `offset` for the next page; null: done")

    @classmethod
    def of(cls, fetched: Sequence[Any], offset: int, limit: int) -> Self:
        """`fetched` as for `paged`: models, or records read by attribute."""
        items, next_offset = paged(fetched, offset, limit)
        return cls(items=items, next_offset=next_offset)


class LimitsOut(ResponseBody):
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None
    tokens_per_day: int | None
    tokens_per_month: int | None


class ModelRouteOut(ResponseBody):
    base_model: str
    adapter: str | None


class TenantOut(ResponseBody):
    id: str
    name: str
    models: dict[str, ModelRouteOut]
    default_model: str | None
    limits: LimitsOut
    safety_policy: str | None
    enabled: bool
    metadata: dict[str, str]
    created_at: float
    updated_at: float


class TenantList(Page[TenantOut]):
    """In creation order."""


class TenantDeleted(BaseModel):
    id: str
    deleted: bool


class KeyOut(ResponseBody):
    """A key as the admin sees it: its shown prefix, never its secret or any hash of it."""

    id: str
    tenant_id: str
    name: str
    prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    allowed_models: list[str] | None
    limits: LimitsOut
    metadata: dict[str, str]
    grace_until: float | None = Field(description="the previous secret works until then")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= time.time():
            return "expired"
        return "active"


class KeyWithSecret(KeyOut):
    secret: str = Field(description="the key itself: shown only in this response")


class KeyPage(Page[KeyOut]):
    """In creation order."""


class AuditOut(ResponseBody):
    id: str
    at: float
    admin_key_id: str
    action: str
    target_type: str
    target_id: str
    change: dict[str, Any]


class AuditList(Page[AuditOut]):
    """Newest first."""


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """The OpenAI error format, which every admin error uses."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A router's `responses`: these statuses answer an `ErrorResponse`."""
    return {status: {"model": ErrorResponse} for status in statuses}


def key_out(key: ApiKey) -> dict[str, Any]:
    """A key as responses and the audit trail show it: without its hashes or status."""
    return KeyOut.model_validate(key).model_dump(exclude={"status"})


def key_with_secret(key: ApiKey, secret: str) -> KeyWithSecret:
    return KeyWithSecret(**key_out(key), secret=secret)


def tenant_out(tenant: Tenant) -> dict[str, Any]:
    return TenantOut.model_validate(tenant).model_dump()
