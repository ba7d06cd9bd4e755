-- Sales at shop tills: a card presented at a till to pay one of its sales, uploaded by
-- POST /v1/sales (protocol.uplink.SaleRecord). Until now tills uploaded them as taps on
-- route 'pos' with the sale id as the stop; those rows move here, so transit_taps holds
-- only transit. A paid purse sale's receipt is cleared like a purse fare: purse_receipts
-- names it by (terminal_id, tap_id = record_id).
CREATE TABLE IF NOT EXISTS till_sales (
    terminal_id  TEXT NOT NULL REFERENCES terminals (id),
    record_id    TEXT NOT NULL,            -- the till's journal id: "<terminal hex>-<seq>"
    sale_id      TEXT NOT NULL,            -- the till's sale
    merchant_id  TEXT NOT NULL,            -- the shop running the till
    at           BIGINT NOT NULL,          -- the till's clock
    kind         TEXT NOT NULL,            -- purse | emv | uid | qr | unknown | error
    accepted     INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    amount       BIGINT,                   -- purse debits
    currency     TEXT,
    card_id      TEXT,                     -- hex, purse cards
    token        TEXT,                     -- pan_/uid_ keyed-hash tokens, never a card number
    flags        TEXT NOT NULL DEFAULT '', -- comma-separated: clock_suspect
    clearing     TEXT,                     -- at upload: posted | held | a refusal (purse_receipts goes on)
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, record_id)
);
CREATE INDEX IF NOT EXISTS till_sales_at ON till_sales (at);

INSERT INTO till_sales (terminal_id, record_id, sale_id, merchant_id, at, kind, accepted, reason, amount,
                        currency, card_id, token, flags, clearing, received_at)
SELECT terminal_id, tap_id, COALESCE(stop, ''), merchant_id, at, kind, accepted, reason, amount, currency,
       card_id, token, flags, clearing, received_at
FROM transit_taps WHERE route = 'pos';
DELETE FROM transit_taps WHERE route = 'pos';
