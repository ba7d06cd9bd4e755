"""Shop QR queries: merchants' QR profiles, checkouts, and the nonces of spent pay codes.

Owns `checkout_profiles`, `checkout_checkouts` and `checkout_pay_code_nonces`
(migration 0005); reads `merchants` and `issuer_cards`.
gateway/core/checkout.py decides. Times are unix seconds.

With many writers at once:
- a checkout is paid (or cancelled) once: `close_checkout` changes it only while
  it is still 'open';
- a wallet-signed pay code pays once: `spend_pay_code_nonce` inserts its
  (card, nonce) under the primary key with ON CONFLICT DO NOTHING, so of two
  tills presenting one code the second inserts nothing (after waiting for the
  first to commit) and is refused.
"""
from __future__ import annotations

_CHECKOUT = ("SELECT c.*, m.name AS merchant_name, p.city, p.mcc FROM checkout_checkouts c"
             " JOIN merchants m ON m.id = c.merchant_id LEFT JOIN checkout_profiles p ON p.merchant_id = m.id"
             " WHERE c.id = :id")


# -- profiles -----------------------------------------------------------------------------

def merchant_with_profile(tx, merchant_id: str) -> dict | None:
    """The merchant's id, name and currency with its profile's city, mcc and store_label (None when unset)."""
    return tx.one("SELECT m.id, m.name, m.currency, p.city, p.mcc, p.store_label FROM merchants m"
                  " LEFT JOIN checkout_profiles p ON p.merchant_id = m.id WHERE m.id = :id", {"id": merchant_id})


def put_profile(tx, *, merchant_id: str, city: str, mcc: str, store_label: str | None, updated_at: int,
                city_latin: str | None = None) -> None:
    """Set the merchant's profile, replacing the one it had."""
    tx.execute("INSERT INTO checkout_profiles (merchant_id, city, mcc, store_label, updated_at, city_latin)"
               " VALUES (:m, :city, :mcc, :label, :at, :city_latin) ON CONFLICT (merchant_id) DO UPDATE SET"
               " city = excluded.city, mcc = excluded.mcc, store_label = excluded.store_label,"
               " updated_at = excluded.updated_at, city_latin = excluded.city_latin",
               {"m": merchant_id, "city": city, "mcc": mcc, "label": store_label, "at": updated_at,
                "city_latin": city_latin})


# -- checkouts ----------------------------------------------------------------------------

def insert_checkout(tx, *, id: str, merchant_id: str, terminal_id: str | None, terminal_label: str, amount: int,
                    currency: str, status: str, payment_id: str | None, wallet_id: str | None, expires_at: int,
                    created_at: int, paid_at: int | None) -> None:
    tx.execute("INSERT INTO checkout_checkouts (id, merchant_id, terminal_id, terminal_label, amount, currency,"
               " status, payment_id, wallet_id, expires_at, created_at, paid_at) VALUES (:id, :merchant_id,"
               " :terminal_id, :terminal_label, :amount, :currency, :status, :payment_id, :wallet_id,"
               " :expires_at, :created_at, :paid_at)",
               {"id": id, "merchant_id": merchant_id, "terminal_id": terminal_id, "terminal_label": terminal_label,
                "amount": amount, "currency": currency, "status": status, "payment_id": payment_id,
                "wallet_id": wallet_id, "expires_at": expires_at, "created_at": created_at, "paid_at": paid_at})


def checkout(tx, checkout_id: str) -> dict | None:
    """The checkout with its merchant's name (merchant_name) and profile's city and mcc."""
    return tx.one(_CHECKOUT, {"id": checkout_id})


def close_checkout(tx, *, checkout_id: str, status: str, payment_id: str | None = None,
                   wallet_id: str | None = None, paid_at: int | None = None) -> bool:
    """Move an open checkout to `status` ('paid' or 'cancelled'); False, changing nothing,
    when it is no longer open."""
    return tx.execute("UPDATE checkout_checkouts SET status = :status, payment_id = :p, wallet_id = :w,"
                      " paid_at = :t WHERE id = :id AND status = 'open'",
                      {"id": checkout_id, "status": status, "p": payment_id, "w": wallet_id, "t": paid_at}) == 1


# -- pay codes ----------------------------------------------------------------------------

def card_wallet_id(tx, card_id: str) -> str | None:
    """The wallet an issued card (hex card id) belongs to."""
    row = tx.one("SELECT wallet_id FROM issuer_cards WHERE card_id = :c", {"c": card_id})
    return row["wallet_id"] if row else None


def spend_pay_code_nonce(tx, *, card_id: str, nonce: str, payment_id: str, expires_at: int) -> bool:
    """Record the pay code as spent by `payment_id`; False when it was spent before."""
    return tx.one("INSERT INTO checkout_pay_code_nonces (card_id, nonce, payment_id, expires_at)"
                  " VALUES (:c, :n, :p, :e) ON CONFLICT (card_id, nonce) DO NOTHING RETURNING nonce",
                  {"c": card_id, "n": nonce, "p": payment_id, "e": expires_at}) is not None


def pay_code_payment(tx, *, card_id: str, nonce: str) -> str | None:
    """The payment a spent pay code made."""
    row = tx.one("SELECT payment_id FROM checkout_pay_code_nonces WHERE card_id = :c AND nonce = :n",
                 {"c": card_id, "n": nonce})
    return row["payment_id"] if row else None


def forget_pay_code_nonces(tx, *, expired_before: int) -> int:
    """Drop the nonces of codes that could no longer verify anyway; how many."""
    return tx.execute("DELETE FROM checkout_pay_code_nonces WHERE expires_at < :t", {"t": expired_before})
