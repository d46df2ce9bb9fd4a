"""One typed settings object, read from a YAML file and overridden by environment variables.

Environment variables use the prefix ``VLLM_GATEWAY_`` and ``__`` between nested names, e.g.
``VLLM_GATEWAY_UPSTREAM__URL=http://vllm:8000``. The YAML file is named by ``--config`` or
``VLLM_GATEWAY_CONFIG``. Precedence: init arguments > environment > YAML > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.redis_client import parse_redis_url
from gateway.safety.policy import SafetySettings

CONFIG_ENV_VAR = "VLLM_GATEWAY_CONFIG"


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8080, ge=0, le=65535, description="listen port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    drain_timeout_s: float = Field(30.0, gt=0, description="SIGTERM: time in-flight streams get")
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="larger bodies get 413")
    max_audio_bytes: int = Field(
        25 * 1024 * 1024,
        gt=0,
        description="the audio routes' multipart bodies (OpenAI's limit: 25 MiB); larger get 413",
    )
    readyz_requires_stores: bool = Field(
        False,
        description="/readyz also answers 503 while a store (Redis, SQLite) is unavailable; off "
        "by default, since recently validated keys keep working from memory meanwhile",
    )


class UpstreamSettings(BaseModel):
    url: HttpUrl | None = Field(
        None, description="vLLM OpenAI server base URL; unset: `serve` starts the stand-in"
    )
    replicas: list[HttpUrl] = Field(
        default_factory=list,
        description="more vLLM base URLs (with `url`, all are replicas); a host name that "
        "resolves to several addresses is one replica per address (env: a JSON list)",
    )
    api_key: str | None = Field(None, description="sent as Bearer token to vLLM's --api-key")
    connect_timeout_s: float = Field(5.0, gt=0, description="connecting to a vLLM replica")
    first_byte_timeout_s: float = Field(
        600.0, gt=0, description="until response headers; a non-streamed answer comes whole"
    )
    stream_idle_timeout_s: float = Field(60.0, gt=0, description="max gap between stream reads")
    max_connections: int = Field(1000, ge=1, description="keep-alive pool size")
    keepalive_timeout_s: float = Field(
        4.0,
        gt=0,
        description="idle pooled connections to vLLM are closed after this; keep it below "
        "vLLM's own keep-alive timeout (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s by default)",
    )


class StoreSettings(BaseModel):
    redis_url: str | None = Field(
        None,
        description="shared state for several instances: redis://, rediss://, unix:// (one "
        "server), redis+cluster://host:port,... (Cluster), redis+sentinel://host:port,.../"
        "service (Sentinel); unset: embedded SQLite file",
    )
    postgres_url: str | None = Field(
        None,
        description="the durable stores (tenants, keys, audit log, adapters, safety policies, "
        "usage) in Postgres, postgresql://user:password@host:port/database; Redis, when also "
        "set, keeps the limiter's counters; migrate first: `vllm-gateway db migrate`",
    )
    sqlite_path: Path = Field(Path("gateway.db"), description="the embedded store's file")
    redis_prefix: str = Field("vgw:", description="prefix of every Redis key the gateway writes")
    redis_timeout_s: float = Field(0.5, gt=0, description="no single Redis call waits longer")
    call_budget_s: float = Field(
        1.0,
        gt=0,
        description="the longest one store operation takes, retries of transient Redis states "
        "(loading, failover, reset connection) included; then it is unavailable (503)",
    )

    @field_validator("redis_url")
    @classmethod
    def _known_topology(cls, url: str | None) -> str | None:
        if url is not None:
            parse_redis_url(url)  # raises ValueError for a malformed Cluster or Sentinel URL
        return url


class AuthSettings(BaseModel):
    enabled: bool = Field(True, description="off: /v1 is open and model names pass through")
    key_hash_secret: SecretStr | None = Field(
        None,
        description="HMAC secret for stored key hashes; unset with SQLite: generated once and "
        "kept in <sqlite_path>.secret; required with Redis or Postgres (same on every instance)",
    )
    key_cache_ttl_s: float = Field(10.0, gt=0, description="validated keys kept in memory")
    stale_key_window_s: float = Field(
        300.0,
        ge=0,
        description="while the key store is unavailable, a key validated within this window "
        "keeps working from memory; other keys get 503 (never 401) until the store is back",
    )


class AdminSettings(BaseModel):
    keys: list[SecretStr] = Field(
        default_factory=list, description="admin API keys (env: a JSON list)"
    )
    keys_file: Path | None = Field(None, description="file with one admin key per line")

    def all_keys(self) -> list[str]:
        keys = [key.get_secret_value() for key in self.keys]
        if self.keys_file is not None:
            lines = self.keys_file.read_text().splitlines()
            keys.extend(line.strip() for line in lines if line.strip())
        return keys


class DefaultLimits(BaseModel):
    """Limits for tenants that set none of their own; None: not limited."""

    requests_per_minute: int | None = Field(None, ge=0, description="requests admitted per minute")
    tokens_per_minute: int | None = Field(None, ge=0, description="prompt + completion")
    max_concurrent: int | None = Field(None, ge=0, description="requests in flight at once")
    tokens_per_day: int | None = Field(None, ge=0, description="budget per UTC day")
    tokens_per_month: int | None = Field(None, ge=0, description="budget per UTC month")


class LimitsSettings(BaseModel):
    defaults: DefaultLimits = DefaultLimits()
    default_max_tokens: int = Field(
        1024, ge=0, description="completion tokens reserved when a request names no max_tokens"
    )
    redis_timeout_s: float = Field(
        0.05, gt=0, description="the longest a request waits for the shared limiter"
    )
    failure_policy: Literal["open", "closed"] = Field(
        "open", description="Redis in trouble: open = limit per instance, closed = answer 503"
    )
    redis_retry_interval_s: float = Field(
        1.0, gt=0, description="after a Redis failure, how long before the next attempt"
    )
    lease_ttl_s: float = Field(
        30.0, gt=0, description="a crashed instance's concurrency slots free after this"
    )
    early_dispatch: bool = Field(
        True,
        description="far from every limit, call vLLM while Redis admits the request (a refused "
        "one is cut off before its answer); false: always wait for Redis first",
    )


class UsageSettings(BaseModel):
    flush_interval_s: float = Field(
        1.0, gt=0, description="how often the records of finished requests go to the store"
    )
    max_pending_entries: int = Field(
        100_000,
        ge=1,
        description="finished requests kept in memory while the usage log cannot be written "
        "(disk full); past it, requests are not recorded",
    )
    wal_dir: Path | None = Field(
        None,
        description="the usage log (every request is in it before its answer leaves, until "
        "the store has it), a directory per store inside; keep it on a disk that outlives the "
        "process; unset: `<sqlite_path>.usage-wal` beside the SQLite file",
    )
    record_retention_days: int = Field(
        35,
        ge=1,
        description="a request's usage record is kept this many days after its UTC day (the "
        "daily rows, which usage reports read, are kept): SQLite and Postgres delete older "
        "ones in batches every hour, Redis expires them",
    )
    wal_fsync_interval_s: float = Field(
        0.05,
        gt=0,
        description="group commit: the usage log is fsynced this often (a power cut loses at "
        "most this much; a killed process loses nothing); no request waits for it",
    )


class ResponsesSettings(BaseModel):
    store: bool = Field(
        True,
        description="keep the responses of requests with `store: true` (the Responses API's "
        "default) in the gateway's store, per tenant, so that GET /v1/responses/{id}, "
        "input_items, previous_response_id and background work on every instance; off: "
        "nothing is kept, and previous_response_id and background answer 400",
    )
    retention_s: float = Field(
        30 * 86400.0, gt=0, description="a stored response is deleted this long after it was made"
    )


class ObservabilitySettings(BaseModel):
    metrics_enabled: bool = Field(True, description="serve Prometheus metrics at /metrics")
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /metrics on this port (all workers merged) instead of the main port",
    )
    metrics_require_admin_key: bool = Field(
        False, description="/metrics on the main port answers only with an admin key"
    )
    access_log: bool = Field(True, description="one JSON line per request on stdout")
    json_logs: bool = Field(False, description="the gateway's other log records as JSON too")
    log_prompts: bool = Field(
        False, description="DEBUG ONLY: also log each request's prompt (never keys or headers)"
    )


class TracingSettings(BaseModel):
    """OpenTelemetry traces: a span per request, carried into vLLM; each unset field falls
    back to the standard OTEL_* environment variable its description names."""

    endpoint: str | None = Field(
        None,
        description="OTLP/HTTP endpoint, e.g. http://tempo:4318 (spans go to <endpoint>/v1/"
        "traces); unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; "
        "none set: tracing is off",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="headers sent with every export (e.g. the collector's auth); empty: "
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS or OTEL_EXPORTER_OTLP_HEADERS",
    )
    service_name: str | None = Field(
        None, description="service.name; unset: OTEL_SERVICE_NAME, else vllm-gateway"
    )
    resource_attributes: dict[str, str] = Field(
        default_factory=dict, description="added to (and over) OTEL_RESOURCE_ATTRIBUTES"
    )
    sample_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="parent-based ratio: a client's sampled flag is followed, new traces are "
        "sampled at this ratio; unset: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else "
        "parentbased_always_on",
    )
    capture_content: bool = Field(
        False,
        description="put the prompt and the answer on sampled spans, after the tenant's "
        "safety policy redacted them",
    )


class RoutingSettings(BaseModel):
    """How requests spread over the replicas, and where LoRA adapters get loaded."""

    policy: Literal["affinity", "prefix", "round_robin"] = Field(
        "affinity",
        description="affinity: prefer replicas that have the adapter, by load; prefix: also "
        "those the prompt's prefix was sent to (vLLM's prefix cache)",
    )
    health_interval_s: float = Field(2.0, gt=0, description="GET /health of each replica")
    health_timeout_s: float = Field(1.0, gt=0, description="the longest one /health check waits")
    eject_after_failures: int = Field(
        2, ge=1, description="consecutive failed checks or connects that eject a replica"
    )
    scrape_interval_s: float = Field(
        2.0, gt=0, description="read each replica's /metrics and /v1/models this often"
    )
    dns_refresh_s: float = Field(30.0, gt=0, description="resolve replica host names again")
    adapter_slots: int | None = Field(
        None, ge=1, description="adapters kept loaded per replica; unset: vLLM's max_lora"
    )
    spare_lora_slots: int = Field(
        0, ge=0, description="of max_lora, slots left empty (1 on vLLM CPU: its LoRA bug)"
    )
    adapter_miss_cost: float = Field(
        8.0, ge=0, description="a replica without the adapter counts as this many more requests"
    )
    waiting_weight: float = Field(1.0, ge=0, description="per vllm:num_requests_waiting")
    kv_cache_weight: float = Field(4.0, ge=0, description="times vllm:kv_cache_usage_perc")
    prefix_chars: int = Field(
        8192, ge=0, description="prefix policy: of the prompt, characters hashed (16 blocks)"
    )
    prefix_miss_cost: float = Field(
        8.0, ge=0, description="prefix policy: a replica without the prefix, as this many requests"
    )
    prefix_entries: int = Field(
        100_000, ge=1, description="prefix policy: prefix blocks remembered per gateway process"
    )
    load_timeout_s: float = Field(120.0, gt=0, description="one /v1/load_lora_adapter call")
    load_attempts: int = Field(3, ge=1, description="tries when loading fails transiently")
    registry_refresh_s: float = Field(5.0, gt=0, description="re-read the adapter registry")


class FairQueueSettings(BaseModel):
    """Per-tenant queues in front of vLLM, used only while the in-flight budget is full."""

    enabled: bool = Field(False, description="hold requests over the budget in tenant queues")
    max_in_flight: int = Field(
        64,
        ge=1,
        description="requests the deployment sends to vLLM at once, divided exactly between "
        "its gateway processes (the workers of every instance, counted through Redis; "
        "without Redis, this instance's workers)",
    )
    queue_timeout_s: float = Field(30.0, gt=0, description="the longest a request waits queued")
    on_timeout: int = Field(429, description="status answered after the timeout: 429 or 503")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with that answer")
    reserved_share: float = Field(
        0.0625,
        ge=0,
        lt=1,
        description="of max_in_flight, slots (rounded up, none of a budget of 1) kept for tenants "
        "below their fair share, so a quiet tenant need not wait for a noisy one's slot to free; "
        "one reserve for the deployment, lent to its processes (through Redis, or the workers' "
        "shared file)",
    )
    reserve_per_extra_process: int = Field(
        1,
        ge=0,
        description="slots the deployment's reserve grows by for each gateway process beyond "
        "the first (taken from the open slots): a lent slot comes back at its borrower's next "
        "release, N times later with N processes, so the same reserve runs out more often",
    )
    active_window_s: float = Field(
        10.0,
        gt=0,
        description="a tenant counts toward the fair shares while it has requests in flight or "
        "queued, or had one within this many seconds",
    )
    holding_window_s: float = Field(
        2.0,
        gt=0,
        description="the slots a tenant holds are averaged over about this many seconds when "
        "its fair share is checked: a light tenant's few requests landing together on one "
        "process are not a heavy tenant, and a heavy tenant counts as heavy within about this",
    )

    @field_validator("on_timeout")
    @classmethod
    def _retry_or_unavailable(cls, status: int) -> int:
        if status not in (429, 503):
            raise ValueError("on_timeout must be 429 or 503")
        return status


class IsolationSettings(BaseModel):
    """Tenant isolation inside vLLM: prefix-cache salt, priority tiers, fair queuing.

    Tenants pick their tier and salt mode with tenant metadata `tier` and `cache_salt`
    ("isolated", or "shared:<group>"); a key's metadata `tier` overrides its tenant's.
    """

    cache_salt_enabled: bool = Field(True, description="set vLLM's cache_salt per tenant")
    cache_salt_secret: SecretStr | None = Field(
        None, description="HMAC secret for the salts; unset: derived from the key-hash secret"
    )
    priority_enabled: bool = Field(
        False, description="send vLLM's priority (only if it runs --scheduling-policy priority)"
    )
    default_tier: str = Field("standard", description="tier of tenants and keys naming none")
    tier_priorities: dict[str, int] = Field(
        default_factory=lambda: {"premium": 0, "standard": 10, "batch": 20},
        description="tier -> vLLM priority; lower is served first",
    )
    tier_weights: dict[str, float] = Field(
        default_factory=lambda: {"premium": 4.0, "standard": 2.0, "batch": 1.0},
        description="tier -> share of the fair queue's budget, relative to other tiers",
    )
    fair_queue: FairQueueSettings = FairQueueSettings()

    @model_validator(mode="after")
    def _tiers_agree(self) -> IsolationSettings:
        tiers = set(self.tier_priorities)
        if tiers != set(self.tier_weights):
            raise ValueError("tier_priorities and tier_weights must name the same tiers")
        if self.default_tier not in tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not a configured tier")
        if any(weight <= 0 for weight in self.tier_weights.values()):
            raise ValueError("tier_weights must be positive")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VLLM_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()
    admin: AdminSettings = AdminSettings()
    routing: RoutingSettings = RoutingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    tracing: TracingSettings = TracingSettings()
    limits: LimitsSettings = LimitsSettings()
    usage: UsageSettings = UsageSettings()
    responses: ResponsesSettings = ResponsesSettings()
    safety: SafetySettings = SafetySettings()
    isolation: IsolationSettings = IsolationSettings()

    @model_validator(mode="after")
    def _shared_key_hash_secret(self) -> Settings:
        """Instances sharing a Postgres database must hash keys alike (with Redis, the key
        store checks it: gateway.tenancy.secrets)."""
        if self.store.postgres_url and self.auth.key_hash_secret is None:
            raise ValueError(
                "auth.key_hash_secret (VLLM_GATEWAY_AUTH__KEY_HASH_SECRET) is required with "
                "store.postgres_url"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get(CONFIG_ENV_VAR)
        if config_path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_path))
        return tuple(sources)


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `config_path` (or $VLLM_GATEWAY_CONFIG), the environment and `overrides`."""
    if config_path is None:
        return Settings(**overrides)
    previous = os.environ.get(CONFIG_ENV_VAR)
    os.environ[CONFIG_ENV_VAR] = str(config_path)
    try:
        return Settings(**overrides)
    finally:
        if previous is None:
            del os.environ[CONFIG_ENV_VAR]
        else:
            os.environ[CONFIG_ENV_VAR] = previous
