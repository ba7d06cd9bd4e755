-- Account-based fares: cards linked to wallets, link codes, and the charges of token trips.
-- Times are unix seconds UTC; money is BIGINT minor units with an ISO 4217 currency.
-- Tokens are pan_/uid_ keyed hashes; no card number is ever stored.

-- A token (bank or transit card) linked to the wallet its trips are charged to: one wallet per token.
CREATE TABLE IF NOT EXISTS fare_card_links (
    id           TEXT PRIMARY KEY,           -- cl_...
    token        TEXT NOT NULL UNIQUE,
    wallet_id    TEXT NOT NULL REFERENCES wallets (id),
    token_kind   TEXT NOT NULL,              -- pan | uid
    assurance    TEXT NOT NULL,              -- high (pan) | low (uid: a UID can be copied)
    terminal_id  TEXT NOT NULL,              -- the terminal the card was tapped on to link it
    created_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fare_card_links_wallet ON fare_card_links (wallet_id);

-- A short-lived code a wallet asked for; a terminal in link mode spends it with one tap.
CREATE TABLE IF NOT EXISTS fare_link_codes (
    code_hash    TEXT PRIMARY KEY,           -- SHA-256 hex of the code
    wallet_id    TEXT NOT NULL REFERENCES wallets (id),
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    link_id      TEXT,
    created_at   BIGINT NOT NULL
);

-- What a token trip cost. A trip is charged once per run at most by its difference from
-- what earlier runs charged (seq 1, 2, ...). status: charged (transfer_id moved the money),
-- free (nothing to pay), unpaid (a debt), settled (a debt collected later by transfer_id).
CREATE TABLE IF NOT EXISTS fare_charges (
    id             TEXT PRIMARY KEY,         -- fch_...
    token          TEXT NOT NULL,
    trip_id        TEXT NOT NULL,            -- the trip's first tap: "<terminal id>/<tap id>"
    seq            BIGINT NOT NULL,
    local_day      TEXT NOT NULL,            -- the operator's local date, YYYY-MM-DD
    week_start     TEXT NOT NULL,            -- the local Monday of that day's week
    at             BIGINT NOT NULL,          -- the trip's first tap
    route          TEXT NOT NULL,
    stop           TEXT NOT NULL,
    terminal_id    TEXT NOT NULL,
    merchant_id    TEXT NOT NULL,            -- the operator whose revenue account is paid
    wallet_id      TEXT,                     -- the linked wallet when charged (null: none linked)
    amount         BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    rules_version  BIGINT,
    status         TEXT NOT NULL,            -- charged | free | unpaid | settled
    transfer_id    TEXT,
    statement      TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    settled_at     BIGINT,
    UNIQUE (token, trip_id, seq)
);
CREATE INDEX IF NOT EXISTS fare_charges_day ON fare_charges (local_day, route);
CREATE INDEX IF NOT EXISTS fare_charges_token ON fare_charges (token, week_start);
CREATE INDEX IF NOT EXISTS fare_charges_wallet ON fare_charges (wallet_id, created_at);
CREATE INDEX IF NOT EXISTS fare_charges_status ON fare_charges (status, token);
