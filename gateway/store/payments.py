"""Payment queries: top-ups, payments, refunds and POS authorisations.

Owns `topups`, `payments`, `refunds` and `pos_authorizations` (migration 0002).
gateway/core/payments.py decides. Times are unix seconds.

Rules that hold with many writers at once, through conditional updates:
- refunds never sum past their payment: `add_refund` adds to the payment's
  refunded amount only `WHERE refunded_amount + :amount <= amount`, so of two
  refunds racing for the last of a payment the second, judged on the row the
  first left, changes nothing;
- an authorisation is captured or voided once: `close_authorization` moves it
  out of 'pending' only while it is still 'pending'.
"""
from __future__ import annotations

# The newest first, after a cursor (created_at, id); one statement per owner, so each
# list reads its own index.
_PAYMENTS_PAGE = {
    "wallet": "SELECT * FROM payments WHERE wallet_id = :owner"
              " AND (created_at < :t OR (created_at = :t AND id < :a)) ORDER BY created_at DESC, id DESC LIMIT :n",
    "merchant": "SELECT * FROM payments WHERE merchant_id = :owner"
                " AND (created_at < :t OR (created_at = :t AND id < :a)) ORDER BY created_at DESC, id DESC LIMIT :n",
    None: "SELECT * FROM payments"
          " WHERE (created_at < :t OR (created_at = :t AND id < :a)) ORDER BY created_at DESC, id DESC LIMIT :n",
}
_LATEST = (2**62, "")  # a cursor (created_at, id) later than every payment: the first page


# -- top-ups ------------------------------------------------------------------------------

def insert_topup(tx, *, id: str, wallet_id: str, amount: int, currency: str, transfer_id: str,
                 created_at: int) -> None:
    tx.execute("INSERT INTO topups (id, wallet_id, amount, currency, transfer_id, created_at)"
               " VALUES (:id, :wallet_id, :amount, :currency, :transfer_id, :created_at)",
               {"id": id, "wallet_id": wallet_id, "amount": amount, "currency": currency,
                "transfer_id": transfer_id, "created_at": created_at})


def topup(tx, topup_id: str) -> dict | None:
    return tx.one("SELECT * FROM topups WHERE id = :id", {"id": topup_id})


# -- payments -----------------------------------------------------------------------------

def insert_payment(tx, *, id: str, wallet_id: str, merchant_id: str, amount: int, refunded_amount: int,
                   currency: str, status: str, description: str | None, transfer_id: str,
                   authorization_id: str | None, created_at: int) -> None:
    tx.execute("INSERT INTO payments (id, wallet_id, merchant_id, amount, refunded_amount, currency, status,"
               " description, transfer_id, authorization_id, created_at) VALUES (:id, :wallet_id, :merchant_id,"
               " :amount, :refunded_amount, :currency, :status, :description, :transfer_id, :authorization_id,"
               " :created_at)",
               {"id": id, "wallet_id": wallet_id, "merchant_id": merchant_id, "amount": amount,
                "refunded_amount": refunded_amount, "currency": currency, "status": status,
                "description": description, "transfer_id": transfer_id, "authorization_id": authorization_id,
                "created_at": created_at})


def payment(tx, payment_id: str) -> dict | None:
    return tx.one("SELECT * FROM payments WHERE id = :id", {"id": payment_id})


def payments_page(tx, *, owner: str | None, owner_id: str | None, after: dict | None, limit: int) -> list[dict]:
    """Up to `limit` payments, newest first, of the wallet or merchant `owner_id` (`owner` "wallet" or
    "merchant"; None: everyone's), older than the payment `after` (its created_at and id) when given."""
    t, a = (after["created_at"], after["id"]) if after is not None else _LATEST
    return tx.query(_PAYMENTS_PAGE[owner], {"owner": owner_id, "t": t, "a": a, "n": limit})


def add_refund(tx, *, payment_id: str, amount: int) -> bool:
    """Add `amount` to the payment's refunded amount (and set its status) unless that would pass
    what was paid; False, changing nothing, when it would."""
    return tx.execute(
        "UPDATE payments SET refunded_amount = refunded_amount + :amount,"
        " status = CASE WHEN refunded_amount + :amount = amount THEN 'refunded' ELSE 'partially_refunded' END"
        " WHERE id = :id AND refunded_amount + :amount <= amount",
        {"id": payment_id, "amount": amount}) == 1


# -- refunds ------------------------------------------------------------------------------

def insert_refund(tx, *, id: str, payment_id: str, amount: int, currency: str, reason: str | None,
                  transfer_id: str, created_at: int) -> None:
    tx.execute("INSERT INTO refunds (id, payment_id, amount, currency, reason, transfer_id, created_at)"
               " VALUES (:id, :payment_id, :amount, :currency, :reason, :transfer_id, :created_at)",
               {"id": id, "payment_id": payment_id, "amount": amount, "currency": currency, "reason": reason,
                "transfer_id": transfer_id, "created_at": created_at})


def refund(tx, refund_id: str) -> dict | None:
    """The refund with its payment's wallet_id and merchant_id."""
    return tx.one("SELECT r.*, p.wallet_id, p.merchant_id FROM refunds r"
                  " JOIN payments p ON p.id = r.payment_id WHERE r.id = :id", {"id": refund_id})


# -- POS authorisations -------------------------------------------------------------------

def insert_authorization(tx, *, id: str, wallet_id: str, merchant_id: str, terminal_id: str | None, amount: int,
                         captured_amount: int, currency: str, status: str, pending_transfer_id: str,
                         payment_id: str | None, expires_at: int, created_at: int) -> None:
    tx.execute("INSERT INTO pos_authorizations (id, wallet_id, merchant_id, terminal_id, amount, captured_amount,"
               " currency, status, pending_transfer_id, payment_id, expires_at, created_at) VALUES (:id,"
               " :wallet_id, :merchant_id, :terminal_id, :amount, :captured_amount, :currency, :status,"
               " :pending_transfer_id, :payment_id, :expires_at, :created_at)",
               {"id": id, "wallet_id": wallet_id, "merchant_id": merchant_id, "terminal_id": terminal_id,
                "amount": amount, "captured_amount": captured_amount, "currency": currency, "status": status,
                "pending_transfer_id": pending_transfer_id, "payment_id": payment_id, "expires_at": expires_at,
                "created_at": created_at})


def authorization(tx, auth_id: str) -> dict | None:
    return tx.one("SELECT * FROM pos_authorizations WHERE id = :id", {"id": auth_id})


def close_authorization(tx, *, auth_id: str, status: str, captured_amount: int = 0,
                        payment_id: str | None = None) -> bool:
    """Move a pending authorisation to `status` ('captured' or 'voided'); False, changing
    nothing, when it is no longer pending."""
    return tx.execute(
        "UPDATE pos_authorizations SET status = :status, captured_amount = :captured, payment_id = :payment"
        " WHERE id = :id AND status = 'pending'",
        {"id": auth_id, "status": status, "captured": captured_amount, "payment": payment_id}) == 1
