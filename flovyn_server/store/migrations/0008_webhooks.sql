-- Webhooks: where a provider's deliveries arrive (/api/hooks/{tenant}/{slug}), how they
-- are verified (`verification` holds the secret: it verifies, it is never returned),
-- and the routes from an event type to what it starts.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    provider TEXT NOT NULL,
    verification TEXT NOT NULL,
    routes TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, slug)
);
CREATE INDEX webhooks_list ON webhooks (tenant_id, created_at);

-- Each verified delivery, what became of it, and what it started. A delivery whose
-- idempotency key was seen before is recorded as a duplicate and starts nothing.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    received_at BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    targets TEXT NOT NULL,
    error TEXT
);
CREATE INDEX webhook_events_list ON webhook_events (webhook_id, received_at);
CREATE INDEX webhook_events_key ON webhook_events (webhook_id, idempotency_key);
