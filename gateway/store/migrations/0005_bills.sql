-- Utility bills and shop QR payments: billers, their bills and the payments towards them,
-- merchants' QR profiles, checkouts (a till's one-sale QR code) and the nonces of the
-- wallet-signed pay codes the gateway has accepted. Money is BIGINT minor units with an
-- ISO 4217 currency; times are unix seconds UTC.

-- A biller is a merchant (same API key, webhooks, balance) whose ledger account is of
-- kind 'biller'; this row marks it as one and holds what its bills' QR codes show.
CREATE TABLE IF NOT EXISTS bill_billers (
    merchant_id  TEXT PRIMARY KEY REFERENCES merchants (id),
    city         TEXT NOT NULL,              -- EMVCo field 60, at most 15 characters
    mcc          TEXT NOT NULL,              -- EMVCo field 52, 4 digits (4900: utilities)
    created_at   BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS bill_bills (
    id               TEXT PRIMARY KEY,       -- bill_... (16 hex digits)
    biller_id        TEXT NOT NULL REFERENCES merchants (id),
    bill_number      TEXT NOT NULL,          -- EMVCo 62/01; unique per biller
    consumer_number  TEXT NOT NULL,          -- the payer's account at the biller; EMVCo 62/05
    period           TEXT NOT NULL,          -- YYYY-MM
    amount_due       BIGINT NOT NULL CHECK (amount_due > 0),
    amount_paid      BIGINT NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
    minimum_payment  BIGINT NOT NULL CHECK (minimum_payment > 0),
    currency         TEXT NOT NULL,
    due_date         TEXT NOT NULL,          -- YYYY-MM-DD
    expires_at       BIGINT NOT NULL,        -- no payment is taken from then on
    status           TEXT NOT NULL,          -- open | partially_paid | paid | cancelled
    created_at       BIGINT NOT NULL,
    paid_at          BIGINT,
    cancelled_at     BIGINT,
    CHECK (amount_paid <= amount_due),
    CHECK (minimum_payment <= amount_due),
    UNIQUE (biller_id, bill_number)
);
CREATE INDEX IF NOT EXISTS bill_bills_consumer ON bill_bills (biller_id, consumer_number, status);
CREATE INDEX IF NOT EXISTS bill_bills_period ON bill_bills (biller_id, period, created_at, id);

CREATE TABLE IF NOT EXISTS bill_payments (
    id           TEXT PRIMARY KEY,           -- bpay_...
    bill_id      TEXT NOT NULL REFERENCES bill_bills (id),
    biller_id    TEXT NOT NULL REFERENCES merchants (id),
    wallet_id    TEXT NOT NULL REFERENCES wallets (id),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    currency     TEXT NOT NULL,
    period       TEXT NOT NULL,              -- the bill's, kept here for reconciliation
    transfer_id  TEXT NOT NULL,              -- the ledger transfer wallet -> biller
    created_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS bill_payments_bill ON bill_payments (bill_id);
CREATE INDEX IF NOT EXISTS bill_payments_biller ON bill_payments (biller_id, period, created_at, id);
CREATE INDEX IF NOT EXISTS bill_payments_wallet ON bill_payments (wallet_id, created_at);

-- What a shop's QR codes show besides its name (EMVCo fields 60, 52 and 62/03).
CREATE TABLE IF NOT EXISTS checkout_profiles (
    merchant_id  TEXT PRIMARY KEY REFERENCES merchants (id),
    city         TEXT NOT NULL,
    mcc          TEXT NOT NULL,
    store_label  TEXT,
    updated_at   BIGINT NOT NULL
);

-- A till's code for one sale: amount fixed, single use, short lived.
CREATE TABLE IF NOT EXISTS checkout_checkouts (
    id              TEXT PRIMARY KEY,        -- chk_... (16 hex digits): EMVCo 62/05
    merchant_id     TEXT NOT NULL REFERENCES merchants (id),
    terminal_id     TEXT,                    -- the till that made it, when one did
    terminal_label  TEXT NOT NULL,           -- EMVCo 62/07
    amount          BIGINT NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL,           -- open | paid | cancelled (expired is derived)
    payment_id      TEXT,                    -- the payment that paid it
    wallet_id       TEXT,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    paid_at         BIGINT
);
CREATE INDEX IF NOT EXISTS checkout_checkouts_merchant ON checkout_checkouts (merchant_id, created_at);

-- Wallet-signed pay codes already spent, by card and nonce; kept until the code could no
-- longer verify anyway, so a replay inside its lifetime is refused.
CREATE TABLE IF NOT EXISTS checkout_pay_code_nonces (
    card_id     TEXT NOT NULL,               -- hex, 8 bytes
    nonce       TEXT NOT NULL,               -- hex, 8 bytes
    payment_id  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,             -- the code's expiry plus the clock allowance
    PRIMARY KEY (card_id, nonce)
);
CREATE INDEX IF NOT EXISTS checkout_pay_code_nonces_expiry ON checkout_pay_code_nonces (expires_at);
