-- The double-entry ledger: accounts, immutable transfers, and postings.
-- Invariants are stated in gateway/ledger.py; the constraints here back them up.

CREATE TABLE ledger_accounts (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('customer_wallet', 'purse_float', 'merchant',
                                                   'biller', 'operator_revenue', 'funding_source',
                                                   'suspense')),
    currency         TEXT NOT NULL CHECK (length(currency) = 3),
    owner_id         TEXT,
    allow_negative   INTEGER NOT NULL CHECK (allow_negative IN (0, 1)),
    -- running totals, updated in the same transaction as the postings
    debits_posted    BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted   BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending   BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending  BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    postings_count   BIGINT NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    -- a non-negative account never goes below zero, counting its pending debits
    CHECK (allow_negative = 1 OR credits_posted - debits_posted - debits_pending >= 0)
);
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner_id);

CREATE TABLE ledger_transfers (
    id                 TEXT PRIMARY KEY,
    debit_account_id   TEXT NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id  TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount             BIGINT NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    code               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('posted', 'pending', 'post_pending',
                                                     'void_pending', 'expire_pending')),
    -- set on the transfer that resolves a pending one; UNIQUE: resolved exactly once
    pending_id         TEXT UNIQUE REFERENCES ledger_transfers (id),
    timeout_seconds    INTEGER,
    expires_at         TEXT,
    metadata           TEXT,
    created_at         TEXT NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('post_pending', 'void_pending', 'expire_pending')) = (pending_id IS NOT NULL))
);
CREATE INDEX ledger_transfers_expiry ON ledger_transfers (kind, expires_at);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id);

-- One row per account per posted movement, numbered per account (seq 1, 2, ...):
-- the statement, and what check() sums to prove each stored balance.
CREATE TABLE ledger_postings (
    account_id     TEXT NOT NULL REFERENCES ledger_accounts (id),
    seq            BIGINT NOT NULL,
    transfer_id    TEXT NOT NULL REFERENCES ledger_transfers (id),
    side           TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    amount         BIGINT NOT NULL CHECK (amount > 0),
    balance_after  BIGINT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX ledger_postings_transfer ON ledger_postings (transfer_id);
