-- Concessions: the fare class a wallet's linked cards are priced with (account-based fares).
-- Values are the concession classes of the published fare rules ("adult", "student", ...);
-- the operator sets it (POST /v1/wallets/<id>/concession). Every wallet starts adult.
ALTER TABLE wallets ADD COLUMN concession TEXT NOT NULL DEFAULT 'adult';
