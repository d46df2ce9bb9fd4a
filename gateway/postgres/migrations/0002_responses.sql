-- Stored responses of the Responses API (gateway/responses): a document per response, kept per
-- tenant until expires_at (Unix seconds), and a background response's stream, a row per batch
-- of events in the order they were appended.

CREATE TABLE responses (
    tenant_id text NOT NULL,
    id text NOT NULL,
    status text NOT NULL,
    expires_at double precision NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX responses_by_expiry ON responses (expires_at);

CREATE TABLE response_events (
    tenant_id text NOT NULL,
    id text NOT NULL,
    batch bigint GENERATED ALWAYS AS IDENTITY,
    events bytea NOT NULL,
    PRIMARY KEY (tenant_id, id, batch)
);
