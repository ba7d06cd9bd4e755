-- Key lifecycle (docs/security.md): merchant API keys that roll with an overlap and are
-- revoked at once, wallet credentials revoked and reissued, terminals suspended,
-- resumed and revoked, webhook signing secrets sealed and rolled. Times are unix seconds.

-- A merchant's API keys, several at once while a roll overlaps. A key works while it is
-- not revoked and not past expires_at (NULL: no expiry). Only the SHA-256 of a key is
-- kept, with its last four characters to tell keys apart on the dashboard.
-- merchants.api_key_hash stays the merchant's first key's hash; this table decides.
CREATE TABLE IF NOT EXISTS merchant_api_keys (
    id          TEXT PRIMARY KEY,            -- mk_...
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    key_hash    TEXT NOT NULL UNIQUE,        -- SHA-256 hex of the sk_... key
    last4       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX IF NOT EXISTS merchant_api_keys_merchant ON merchant_api_keys (merchant_id, created_at);
INSERT INTO merchant_api_keys (id, merchant_id, key_hash, last4, created_at)
    SELECT 'mk_' || substr(api_key_hash, 1, 24), id, api_key_hash, '', created_at FROM merchants;

-- A revoked wallet credential: the wallet's key stops working until the operator reissues one.
ALTER TABLE wallets ADD COLUMN credential_revoked_at BIGINT;

-- When a terminal was suspended (status 'suspended'; 'revoked' is final).
ALTER TABLE terminals ADD COLUMN suspended_at BIGINT;

-- Webhook signing secrets are sealed (AES-256-GCM under the gateway's webhook_seal secret,
-- "v1.<base64>"); rows written before this release still hold "whsec_..." and are sealed
-- by every gateway as it starts (gateway.webhooks.seal_stored_secrets). During a roll the
-- previous secret signs too, until previous_secret_expires_at.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at BIGINT;
