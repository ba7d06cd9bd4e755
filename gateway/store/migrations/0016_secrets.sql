-- The gateway's named secrets, when they live in the database: on PostgreSQL, so that
-- every node of a deployment uses the same ones. Each value is sealed (AES-256-GCM)
-- under the node's master key, which is configuration, never stored here
-- (gateway/config.py). An SQLite gateway keeps its secrets in its data directory.
CREATE TABLE IF NOT EXISTS gateway_secrets (
    name        TEXT PRIMARY KEY,
    sealed      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
