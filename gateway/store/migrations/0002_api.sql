-- The HTTP API's objects: customers, wallets, merchants, terminals, payments, refunds,
-- POS authorisations and pay codes, plus idempotency records and terminal nonces.
-- Money is BIGINT minor units with an ISO 4217 currency; times are unix seconds UTC.
-- Credentials are stored only as SHA-256 hex of a 256-bit random key.

CREATE TABLE IF NOT EXISTS customers (
    id          TEXT PRIMARY KEY,            -- cus_...
    name        TEXT,
    email       TEXT,
    external_ref TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS wallets (
    id              TEXT PRIMARY KEY,        -- wal_...
    customer_id     TEXT NOT NULL REFERENCES customers (id),
    account_id      TEXT NOT NULL,           -- the ledger's customer_wallet account
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active',   -- active | locked (the issuer locks)
    credential_hash TEXT NOT NULL UNIQUE,    -- SHA-256 hex of the wk_... credential
    created_at      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS wallets_customer ON wallets (customer_id);

CREATE TABLE IF NOT EXISTS merchants (
    id           TEXT PRIMARY KEY,           -- mer_...
    name         TEXT NOT NULL,
    account_id   TEXT NOT NULL,              -- the ledger's merchant account
    currency     TEXT NOT NULL,
    api_key_hash TEXT NOT NULL UNIQUE,       -- SHA-256 hex of the sk_... key
    created_at   BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS terminals (
    id          TEXT PRIMARY KEY,            -- term_...
    key_id      TEXT NOT NULL UNIQUE,        -- tk_...; the secret is HMAC(master, key_id)
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    name        TEXT,
    status      TEXT NOT NULL DEFAULT 'active',   -- active | disabled
    created_at  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS payments (
    id               TEXT PRIMARY KEY,       -- pay_...
    wallet_id        TEXT NOT NULL REFERENCES wallets (id),
    merchant_id      TEXT NOT NULL REFERENCES merchants (id),
    amount           BIGINT NOT NULL,
    refunded_amount  BIGINT NOT NULL DEFAULT 0,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,          -- succeeded | partially_refunded | refunded
    description      TEXT,
    transfer_id      TEXT NOT NULL,          -- the ledger transfer wallet -> merchant
    authorization_id TEXT,                   -- set when a POS capture made it
    created_at       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_wallet ON payments (wallet_id, created_at, id);
CREATE INDEX IF NOT EXISTS payments_merchant ON payments (merchant_id, created_at, id);

CREATE TABLE IF NOT EXISTS refunds (
    id          TEXT PRIMARY KEY,            -- re_...
    payment_id  TEXT NOT NULL REFERENCES payments (id),
    amount      BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    reason      TEXT,
    transfer_id TEXT NOT NULL,               -- the ledger transfer merchant -> wallet
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_payment ON refunds (payment_id);

CREATE TABLE IF NOT EXISTS topups (
    id          TEXT PRIMARY KEY,            -- top_...
    wallet_id   TEXT NOT NULL REFERENCES wallets (id),
    amount      BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    transfer_id TEXT NOT NULL,               -- funding_source -> wallet
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS topups_wallet ON topups (wallet_id);

-- A pay code is what the payer's phone shows at the till: single use, short lived.
CREATE TABLE IF NOT EXISTS pay_codes (
    code_hash   TEXT PRIMARY KEY,            -- SHA-256 hex of the pc_... code
    wallet_id   TEXT NOT NULL REFERENCES wallets (id),
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS pos_authorizations (
    id              TEXT PRIMARY KEY,        -- auth_...
    wallet_id       TEXT NOT NULL REFERENCES wallets (id),
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    terminal_id     TEXT,                    -- the till that asked, when one did
    amount          BIGINT NOT NULL,
    captured_amount BIGINT NOT NULL DEFAULT 0,
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL,           -- pending | captured | voided (expired is derived)
    pending_transfer_id TEXT NOT NULL,       -- the ledger's pending transfer
    payment_id      TEXT,                    -- the payment a capture made
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS pos_authorizations_merchant ON pos_authorizations (merchant_id);

-- The first successful answer to each (caller, Idempotency-Key), written in the same
-- transaction as the effect; a retry replays status and body byte for byte.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    caller_kind  TEXT NOT NULL,
    caller_id    TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    request_hash TEXT NOT NULL,              -- SHA-256 hex of method, path and body
    status       INTEGER NOT NULL,
    response     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (caller_kind, caller_id, idem_key)
);

-- Nonces seen on signed terminal requests, kept past the signature window.
CREATE TABLE IF NOT EXISTS terminal_nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    seen_at    BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS terminal_nonces_seen ON terminal_nonces (seen_at);
