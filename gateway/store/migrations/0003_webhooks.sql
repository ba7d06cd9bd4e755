-- Webhooks: endpoints merchants register, the durable outbox of events, one delivery
-- per (event, endpoint), and every attempt made. Times are unix seconds UTC.

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id          TEXT PRIMARY KEY,            -- we_...
    merchant_id TEXT NOT NULL,
    url         TEXT NOT NULL,
    event_types TEXT NOT NULL,               -- space-separated; "*" is every type
    secret      TEXT NOT NULL,               -- whsec_..., shown once at creation
    status      TEXT NOT NULL DEFAULT 'enabled',   -- enabled | deleted
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_merchant ON webhook_endpoints (merchant_id, status);

-- The outbox: written in the same transaction as the payment or refund it tells of.
CREATE TABLE IF NOT EXISTS webhook_events (
    id          TEXT PRIMARY KEY,            -- evt_..., stable across retries
    merchant_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    body        TEXT NOT NULL,               -- the exact JSON every attempt sends
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_events_merchant ON webhook_events (merchant_id, created_at, id);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              TEXT PRIMARY KEY,        -- whd_...
    event_id        TEXT NOT NULL REFERENCES webhook_events (id),
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id),
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending | delivering | succeeded | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,                 -- a claim by a deliverer expires then
    claim           TEXT,                    -- which claim holds it
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id          TEXT PRIMARY KEY,            -- wha_...
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at BIGINT NOT NULL,
    status_code INTEGER,                     -- NULL when no HTTP answer came
    error       TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id, attempted_at);
