-- Bus taps uploaded by validators, and the clearing of purse receipts.
-- Times are unix seconds UTC; money is BIGINT minor units with an ISO 4217 currency.

-- Every tap a validator uploaded, once: (terminal, tap id) is the idempotency key.
CREATE TABLE IF NOT EXISTS transit_taps (
    terminal_id    TEXT NOT NULL REFERENCES terminals (id),
    tap_id         TEXT NOT NULL,            -- the validator's id: "<terminal hex>-<seq>"
    merchant_id    TEXT NOT NULL,            -- the transport operator running the terminal
    at             BIGINT NOT NULL,          -- the validator's clock
    kind           TEXT NOT NULL,            -- purse | emv | uid | qr | unknown | error
    accepted       INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    route          TEXT,
    stop           TEXT,
    rules_version  BIGINT,
    amount         BIGINT,                   -- purse debits
    currency       TEXT,
    card_id        TEXT,                     -- hex, purse cards
    token          TEXT,                     -- pan_/uid_ keyed-hash tokens, never a card number
    flags          TEXT NOT NULL DEFAULT '', -- comma-separated: clock_suspect, unknown_route
    clearing       TEXT,                     -- purse: posted | held | a refusal; tokens: unpriced
    received_at    BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, tap_id)
);
CREATE INDEX IF NOT EXISTS transit_taps_route_at ON transit_taps (route, at);
CREATE INDEX IF NOT EXISTS transit_taps_token_at ON transit_taps (token, at);

-- A purse card as the gateway has cleared it: the chain of its receipts is complete up
-- to cleared_counter, where the card held cleared_balance.
CREATE TABLE IF NOT EXISTS purse_cards (
    card_id           TEXT PRIMARY KEY,
    currency          TEXT NOT NULL,
    float_account_id  TEXT NOT NULL,         -- the ledger purse_float account backing the card
    cleared_counter   BIGINT NOT NULL DEFAULT 0,
    cleared_balance   BIGINT NOT NULL DEFAULT 0,
    problem           TEXT,                  -- set when the chain broke: clearing stops for the card
    created_at        BIGINT NOT NULL
);

-- Debit receipts received, one per (card, counter). held: waiting for the counters before
-- it; posted: money moved (transfer_id); refused ones are not kept here.
CREATE TABLE IF NOT EXISTS purse_receipts (
    card_id        TEXT NOT NULL,
    counter        BIGINT NOT NULL,
    amount         BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    balance_after  BIGINT NOT NULL,
    receipt        TEXT NOT NULL,            -- hex, 108 bytes, card-signed
    terminal_id    TEXT NOT NULL,
    tap_id         TEXT NOT NULL,
    merchant_id    TEXT NOT NULL,
    status         TEXT NOT NULL,            -- held | posted | balance_mismatch
    transfer_id    TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (card_id, counter)
);

-- Value a wallet moved onto its card: authorised for the card's counter, good once.
CREATE TABLE IF NOT EXISTS purse_loads (
    id                  TEXT PRIMARY KEY,    -- pl_...
    wallet_id           TEXT NOT NULL REFERENCES wallets (id),
    card_id             TEXT NOT NULL,
    counter             BIGINT NOT NULL,     -- the card's counter before the top-up
    amount              BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    reference           TEXT NOT NULL,       -- hex, 8 bytes, the receipt's nonce on the card
    authorisation       TEXT NOT NULL,       -- hex, protocol.purse TOP-UP data
    transfer_id         TEXT NOT NULL,       -- wallet -> purse float
    status              TEXT NOT NULL,       -- authorised | applied | superseded
    refund_transfer_id  TEXT,                -- purse float -> wallet, when superseded
    created_at          BIGINT NOT NULL,
    UNIQUE (card_id, counter)
);
