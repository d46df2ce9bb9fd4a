-- The durable stores' tables: tenants, API keys and the audit log (gateway/tenancy), LoRA
-- adapters (gateway/adapters), safety policies (gateway/safety) and the usage ledger
-- (gateway/usage). Records are JSON documents (`doc`) beside the columns that need an index or
-- a constraint, as in the SQLite file; times are Unix seconds (to_timestamp(at) for a date).

CREATE TABLE tenants (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX tenants_by_creation ON tenants (created_at, id);

-- last_used_at is authoritative over the document's copy: touch_keys moves it alone.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    created_at double precision NOT NULL,
    last_used_at double precision,
    doc jsonb NOT NULL
);
CREATE INDEX api_keys_by_creation ON api_keys (created_at, id);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at, id);

-- One row per current or grace-period secret hash of a key.
CREATE TABLE key_hashes (
    hash text PRIMARY KEY,
    key_id text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE
);
CREATE INDEX key_hashes_by_key ON key_hashes (key_id);

CREATE TABLE audit (
    id text PRIMARY KEY,
    at double precision NOT NULL,
    target_id text NOT NULL,
    action text NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX audit_by_time ON audit (at, id);
CREATE INDEX audit_by_target ON audit (target_id, at, id);
CREATE INDEX audit_by_action ON audit (action, at, id);

CREATE TABLE lora_adapters (
    name text PRIMARY KEY,
    doc jsonb NOT NULL
);

CREATE TABLE safety_policies (
    name text PRIMARY KEY,
    updated_at double precision NOT NULL,
    doc jsonb NOT NULL
);

-- The ledger: one row per request, keyed by the gateway's record id (written once), and the
-- counts per UTC day, tenant, key and public model, added to only when a record is new.
CREATE TABLE usage_daily (
    day date NOT NULL,
    tenant_id text NOT NULL,
    key_id text NOT NULL,
    model text NOT NULL,
    requests bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    errors bigint NOT NULL,
    rejected bigint NOT NULL,
    PRIMARY KEY (day, tenant_id, key_id, model)
);
CREATE INDEX usage_daily_by_tenant ON usage_daily (tenant_id, day);

CREATE TABLE usage_records (
    record_id text PRIMARY KEY,
    request_id text NOT NULL,
    time double precision NOT NULL,
    tenant_id text NOT NULL,
    key_id text NOT NULL,
    endpoint text NOT NULL,
    model text NOT NULL,
    upstream_model text,
    replica text,
    stream boolean NOT NULL,
    status integer NOT NULL,
    prompt_tokens integer NOT NULL,
    cached_tokens integer NOT NULL,
    completion_tokens integer NOT NULL,
    latency_ms double precision,
    ttft_ms double precision,
    estimated boolean NOT NULL,
    aborted boolean NOT NULL,
    base_model text,
    adapter text,
    finish_reason text,
    safety_action text,
    day date NOT NULL
);
CREATE INDEX usage_records_by_tenant ON usage_records (tenant_id, day);
CREATE INDEX usage_records_by_request ON usage_records (request_id);
CREATE INDEX usage_records_by_day ON usage_records (day);
