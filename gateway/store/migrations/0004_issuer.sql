-- The issuer role: the gateway's issuer keys (public halves only; the seed lives in the
-- secrets file), the cards it certified, and the versioned deny-list terminals fetch.
-- Times are unix seconds UTC.

CREATE TABLE IF NOT EXISTS issuer_keys (
    key_id      TEXT PRIMARY KEY,            -- hex of protocol.certs.key_id(public key)
    public_key  TEXT NOT NULL UNIQUE,        -- hex, 32 bytes Ed25519
    status      TEXT NOT NULL DEFAULT 'active',   -- active | retired (still published)
    created_at  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS issuer_cards (
    card_id       TEXT PRIMARY KEY,          -- hex, 8 bytes
    wallet_id     TEXT NOT NULL REFERENCES wallets (id),
    public_key    TEXT NOT NULL UNIQUE,      -- hex, the wallet's Ed25519 key
    issuer_key_id TEXT NOT NULL REFERENCES issuer_keys (key_id),
    not_after     BIGINT NOT NULL,
    certificate   TEXT NOT NULL,             -- hex, 113 bytes (protocol.certs)
    created_at    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS issuer_cards_wallet ON issuer_cards (wallet_id);

-- What is denied now. source says who put it there: an operator, or a wallet lock
-- (which unlock takes back, leaving an operator's own entries alone).
CREATE TABLE IF NOT EXISTS issuer_deny_list (
    entry      TEXT PRIMARY KEY,             -- a card id (hex) or a keyed-hash token
    kind       TEXT NOT NULL,                -- card_id | token
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,                -- operator | wallet_lock
    wallet_id  TEXT,
    version    BIGINT NOT NULL,              -- the change that added it
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS issuer_deny_list_wallet ON issuer_deny_list (wallet_id);

-- Every change, one version each, so a terminal can ask for what changed since its copy.
CREATE TABLE IF NOT EXISTS issuer_deny_list_changes (
    version    BIGINT PRIMARY KEY,
    entry      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    action     TEXT NOT NULL,                -- add | remove
    reason     TEXT,
    created_at BIGINT NOT NULL
);
