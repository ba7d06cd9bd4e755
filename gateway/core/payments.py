"""Money movements: top-ups, payments, refunds and POS authorisations.

    top-up        funding_source -> customer_wallet   (a simulated bank or card)
    payment       customer_wallet -> merchant
    refund        merchant -> customer_wallet         (cumulative, never above the payment)
    authorisation a pending customer_wallet -> merchant transfer with a timeout;
                  capture posts all or part of it (and makes a payment), void releases it

Every function runs in the caller's transaction: the ledger transfer, the API row
and the webhook event commit together or not at all. A payment or top-up writes its
own rows first and moves the money last: the row of an account every request
shares (the merchant's, the funding source) is locked from the money's move to the
commit, and on PostgreSQL every other payment to that account waits that long.
Should the move fail, the error leaves the rows written so far in the caller's
transaction, which store.write rolls back whole. Each rule that two writers
could race on is claimed by a conditional update before money moves (a refund on
the payment's refunded amount, a capture or void on the authorisation's status),
so the one that comes second is judged on what the first left (gateway/store/payments.py).
"""
from __future__ import annotations

import math
from datetime import datetime

from gateway.core import iso, ledger, new_id, unix
from gateway.core.caller import Caller
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.core.merchants import payee
from gateway.core.wallets import redeem_pay_code, require_active, wallet_row
from gateway.core.webhooks import emit
from gateway.store import merchants as merchants_db
from gateway.store import payments as payments_db
from gateway.store import wallets as wallets_db

DEFAULT_AUTHORIZATION_SECONDS = 15 * 60
MAX_AUTHORIZATION_SECONDS = 7 * 24 * 3600


def _same_currency(expected: str, currency: str) -> None:
    if currency != expected:
        raise Invalid("currency_mismatch", f"The account is kept in {expected}, not {currency}.",
                      "currency")


def funding_account(tx, currency: str, *, now: datetime) -> str:
    """The simulated funding source for a currency, opened on first use under one id per
    currency (so two first top-ups at once open one account)."""
    for account in ledger.find_accounts(tx, kind="funding_source", currency=currency, limit=10):
        if account["owner_id"] is None:
            return account["id"]
    return ledger.open_account(tx, kind="funding_source", currency=currency, owner_id=None,
                               account_id=f"acc_funding_{currency.lower()}", now=now)["id"]


def release_expired_holds(tx, *, now: datetime, limit: int = 100) -> None:
    """Expire due POS holds (of every account) now; the payment paths expire only the payer's, when needed."""
    ledger.expire_pending(tx, now=now, limit=limit)


def has_lapsed_holds(tx, account_id: str, *, now: datetime) -> bool:
    """Does the account still count a hold whose time is up? (Then expire before showing it.)"""
    return bool(ledger.lapsed_holds(tx, account_id, now, limit=1))


def _spend(tx, *, account_id: str, now: datetime, **transfer) -> dict:
    """ledger.transfer from a wallet; a lapsed POS hold never blocks it.

    A hold whose time is up still counts as held until something expires it. Rather
    than sweep on every payment, the payer's lapsed holds are expired only when the
    money seems short, and the transfer is tried once more (the failed try wrote nothing).
    """
    try:
        return ledger.transfer(tx, debit_account_id=account_id, now=now, **transfer)
    except ledger.InsufficientFunds:
        if not ledger.expire_pending(tx, now=now, account_id=account_id):
            raise
        return ledger.transfer(tx, debit_account_id=account_id, now=now, **transfer)


# -- top-ups ---------------------------------------------------------------

def topup_view(row: dict) -> dict:
    return {"id": row["id"], "object": "topup", "wallet_id": row["wallet_id"],
            "amount": row["amount"], "currency": row["currency"], "status": "succeeded",
            "created_at": iso(row["created_at"])}


def create_topup(tx, caller: Caller, *, wallet_id: str, amount: int, currency: str,
                 now: datetime) -> dict:
    wallet = wallet_row(tx, caller, wallet_id, "wallet_id")
    require_active(wallet)
    _same_currency(wallet["currency"], currency)
    topup_id = new_id("top")
    row = {"id": topup_id, "wallet_id": wallet_id, "amount": amount, "currency": currency,
           "transfer_id": topup_id, "created_at": unix(now)}
    payments_db.insert_topup(tx, **row)
    ledger.transfer(tx, transfer_id=topup_id, debit_account_id=funding_account(tx, currency, now=now),
                    credit_account_id=wallet["account_id"], amount=amount, currency=currency,
                    code="topup", now=now)  # last: see the module docstring
    return topup_view(row)


def get_topup(tx, caller: Caller, topup_id: str) -> dict:
    row = payments_db.topup(tx, topup_id)
    if row is None or not (caller.kind == "operator" or
                           (caller.kind == "wallet" and caller.id == row["wallet_id"])):
        raise not_found("top-up", "id")
    return topup_view(row)


# -- payments --------------------------------------------------------------

def payment_view(row: dict) -> dict:
    return {"id": row["id"], "object": "payment", "wallet_id": row["wallet_id"],
            "merchant_id": row["merchant_id"], "amount": row["amount"],
            "amount_refunded": row["refunded_amount"], "currency": row["currency"],
            "status": row["status"], "description": row["description"],
            "authorization_id": row["authorization_id"], "created_at": iso(row["created_at"])}


def _record_payment(tx, *, payment_id: str, wallet: dict, merchant: dict, amount: int,
                    currency: str, description: str | None, authorization_id: str | None,
                    transfer_id: str, now: datetime) -> dict:
    row = {"id": payment_id, "wallet_id": wallet["id"], "merchant_id": merchant["id"],
           "amount": amount, "refunded_amount": 0, "currency": currency, "status": "succeeded",
           "description": description, "transfer_id": transfer_id,
           "authorization_id": authorization_id, "created_at": unix(now)}
    payments_db.insert_payment(tx, **row)
    view = payment_view(row)
    emit(tx, merchant_id=merchant["id"], event_type="payment.succeeded", data=view, now=now)
    return view


def create_payment(tx, caller: Caller, *, merchant_id: str, amount: int, currency: str,
                   description: str | None, now: datetime, payment_id: str | None = None) -> dict:
    """The calling wallet pays a merchant. `payment_id` is the id to give the payment, for a
    caller that must name it before it is made; a new one otherwise."""
    wallet = wallet_row(tx, caller, caller.id, "wallet_id")
    require_active(wallet)
    _same_currency(wallet["currency"], currency)
    merchant = payee(tx, merchant_id)
    _same_currency(merchant["currency"], currency)
    payment_id = payment_id or new_id("pay")
    payment = _record_payment(tx, payment_id=payment_id, wallet=wallet, merchant=merchant,
                              amount=amount, currency=currency, description=description,
                              authorization_id=None, transfer_id=payment_id, now=now)
    _spend(tx, transfer_id=payment_id, account_id=wallet["account_id"],
           credit_account_id=merchant["account_id"], amount=amount, currency=currency,
           code="payment", now=now)  # last: see the module docstring
    return payment


def _payment_visible(caller: Caller, row: dict) -> bool:
    return (caller.kind == "operator"
            or (caller.kind == "wallet" and caller.id == row["wallet_id"])
            or (caller.kind == "merchant" and caller.id == row["merchant_id"]))


def get_payment(tx, caller: Caller, payment_id: str) -> dict:
    row = payments_db.payment(tx, payment_id)
    if row is None or not _payment_visible(caller, row):
        raise not_found("payment", "id")
    return payment_view(row)


def list_payments(tx, caller: Caller, *, limit: int, after: str | None) -> dict:
    """The caller's own payments, newest first; `after` is the last id of the previous page."""
    owner = caller.kind if caller.kind in ("wallet", "merchant") else None  # None: the operator's, all
    anchor = None
    if after is not None:
        anchor = payments_db.payment(tx, after)
        if anchor is None or (owner is not None and anchor[f"{owner}_id"] != caller.id):
            raise Invalid("invalid_cursor", "after is not a payment in this list.", "after")
    rows = payments_db.payments_page(tx, owner=owner, owner_id=caller.id if owner else None, after=anchor,
                                     limit=limit + 1)
    page = rows[:limit]
    has_more = len(rows) > limit
    return {"object": "list", "data": [payment_view(r) for r in page], "has_more": has_more,
            "next_cursor": page[-1]["id"] if has_more else None}


# -- refunds ---------------------------------------------------------------

def refund_view(row: dict) -> dict:
    return {"id": row["id"], "object": "refund", "payment_id": row["payment_id"],
            "amount": row["amount"], "currency": row["currency"], "status": "succeeded",
            "reason": row["reason"], "created_at": iso(row["created_at"])}


def create_refund(tx, caller: Caller, *, payment_id: str, amount: int | None,
                  reason: str | None, now: datetime) -> dict:
    """The paid merchant, or a terminal of it, gives back all that is left of a payment, or
    part of it. Anyone else is told the payment does not exist, as for a missing id."""
    payment = payments_db.payment(tx, payment_id)
    if (payment is None or caller.kind not in ("merchant", "terminal")
            or caller.merchant_id is None or payment["merchant_id"] != caller.merchant_id):
        raise not_found("payment", "payment_id")
    amount = _count_refund(tx, payment, amount)
    merchant = merchants_db.merchant(tx, payment["merchant_id"])
    wallet = wallets_db.wallet(tx, payment["wallet_id"])
    refund_id = new_id("re")
    ledger.transfer(tx, transfer_id=refund_id, debit_account_id=merchant["account_id"],
                    credit_account_id=wallet["account_id"], amount=amount,
                    currency=payment["currency"], code="refund", now=now,
                    metadata={"payment_id": payment_id})
    row = {"id": refund_id, "payment_id": payment_id, "amount": amount,
           "currency": payment["currency"], "reason": reason, "transfer_id": refund_id,
           "created_at": unix(now)}
    payments_db.insert_refund(tx, **row)
    view = refund_view(row)
    emit(tx, merchant_id=payment["merchant_id"], event_type="refund.succeeded", data=view, now=now)
    return view


def _count_refund(tx, payment: dict, requested: int | None) -> int:
    """Add the refund (`requested`, or all that is left when None) to the payment's refunded
    amount; the amount to refund. The conditional update is the check, so a refund that comes
    second is judged on what the first one left: never more than was paid, however many at once."""
    for _ in range(3):
        amount = ledger.refundable(payment["amount"], payment["refunded_amount"], requested)
        if payments_db.add_refund(tx, payment_id=payment["id"], amount=amount):
            return amount
        payment = payments_db.payment(tx, payment["id"])  # another refund came first: judge again
    raise Conflict("concurrent_refund", "Other refunds of this payment happened meanwhile; retry.")


def get_refund(tx, caller: Caller, refund_id: str) -> dict:
    row = payments_db.refund(tx, refund_id)
    if row is None or not _payment_visible(caller, row):
        raise not_found("refund", "id")
    return refund_view(row)


# -- POS authorisations ----------------------------------------------------

def authorization_view(row: dict, now: datetime) -> dict:
    status = row["status"]
    if status == "pending" and unix(now) >= row["expires_at"]:
        status = "expired"
    return {"id": row["id"], "object": "authorization", "wallet_id": row["wallet_id"],
            "merchant_id": row["merchant_id"], "terminal_id": row["terminal_id"],
            "amount": row["amount"], "amount_captured": row["captured_amount"],
            "currency": row["currency"], "status": status, "payment_id": row["payment_id"],
            "expires_at": iso(row["expires_at"]), "created_at": iso(row["created_at"])}


def authorize(tx, caller: Caller, *, pay_code: str, amount: int, currency: str,
              timeout_seconds: int | None, now: datetime) -> dict:
    """A till holds `amount` of the wallet behind a pay code for its merchant."""
    merchant = merchants_db.merchant(tx, caller.merchant_id)
    _same_currency(merchant["currency"], currency)
    wallet = redeem_pay_code(tx, pay_code, now=now)
    _same_currency(wallet["currency"], currency)
    timeout = timeout_seconds or DEFAULT_AUTHORIZATION_SECONDS
    auth_id = new_id("auth")
    _spend(tx, transfer_id=auth_id, account_id=wallet["account_id"],
           credit_account_id=merchant["account_id"], amount=amount, currency=currency,
           code="pos_authorization", now=now, pending=True, timeout_seconds=timeout)
    row = {"id": auth_id, "wallet_id": wallet["id"], "merchant_id": merchant["id"],
           "terminal_id": caller.id if caller.kind == "terminal" else None,
           "amount": amount, "captured_amount": 0, "currency": currency, "status": "pending",
           "pending_transfer_id": auth_id, "payment_id": None,
           # rounded up, so whenever the API says expired the ledger agrees
           "expires_at": math.ceil(now.timestamp() + timeout), "created_at": unix(now)}
    payments_db.insert_authorization(tx, **row)
    return authorization_view(row, now)


def _authorization_row(tx, caller: Caller, auth_id: str) -> dict:
    row = payments_db.authorization(tx, auth_id)
    visible = row is not None and (
        caller.kind == "operator"
        or (caller.kind in ("merchant", "terminal") and caller.merchant_id == row["merchant_id"])
        or (caller.kind == "wallet" and caller.id == row["wallet_id"]))
    if not visible:
        raise not_found("authorization", "id")
    return row


def get_authorization(tx, caller: Caller, auth_id: str, *, now: datetime) -> dict:
    return authorization_view(_authorization_row(tx, caller, auth_id), now)


def _open_authorization(tx, caller: Caller, auth_id: str, now: datetime) -> dict:
    """An authorisation the merchant (or one of its terminals) may still capture or void."""
    if caller.kind not in ("merchant", "terminal"):
        raise not_found("authorization", "id")
    row = _authorization_row(tx, caller, auth_id)
    _require_pending(row, now)
    return row


def _require_pending(row: dict, now: datetime) -> None:
    if row["status"] != "pending":
        raise Conflict(f"authorization_{row['status']}", f"This authorisation is already {row['status']}.")
    if unix(now) >= row["expires_at"]:
        raise Conflict("authorization_expired", "This authorisation has expired; its hold is released.")


def _close(tx, row: dict, now: datetime, **closing) -> None:
    """Move the authorisation out of pending before its hold is touched: of a capture and a void
    (or two captures) at once, the second finds it closed and is told how."""
    if not payments_db.close_authorization(tx, auth_id=row["id"], **closing):
        _require_pending(payments_db.authorization(tx, row["id"]), now)
        raise Conflict("authorization_changed", "This authorisation changed meanwhile; read it again.")


def capture(tx, caller: Caller, auth_id: str, *, amount: int | None, now: datetime) -> dict:
    """Post all or part of the hold; the rest goes back to the wallet. Makes a payment."""
    row = _open_authorization(tx, caller, auth_id, now)
    amount = row["amount"] if amount is None else amount
    if amount > row["amount"]:
        raise Invalid("amount_too_large", f"At most {row['amount']} was authorised.", "amount")
    capture_id, payment_id = new_id("cap"), new_id("pay")
    _close(tx, row, now, status="captured", captured_amount=amount, payment_id=payment_id)
    ledger.post_pending(tx, transfer_id=capture_id, pending_id=row["pending_transfer_id"],
                        amount=amount, now=now)
    wallet = wallets_db.wallet(tx, row["wallet_id"])
    merchant = merchants_db.merchant(tx, row["merchant_id"])
    _record_payment(tx, payment_id=payment_id, wallet=wallet, merchant=merchant, amount=amount,
                    currency=row["currency"], description=None, authorization_id=auth_id,
                    transfer_id=capture_id, now=now)
    return authorization_view({**row, "status": "captured", "captured_amount": amount,
                               "payment_id": payment_id}, now)


def void(tx, caller: Caller, auth_id: str, *, now: datetime) -> dict:
    """Release the whole hold."""
    row = _open_authorization(tx, caller, auth_id, now)
    _close(tx, row, now, status="voided")
    ledger.void_pending(tx, transfer_id=new_id("void"), pending_id=row["pending_transfer_id"], now=now)
    return authorization_view({**row, "status": "voided"}, now)
