"""Shop payments by QR code: a merchant's static code, a till's checkout code, and a
customer's wallet-signed pay code presented at the till.

- Static code (EMVCo, point of initiation 11): the merchant's id, name, city and
  category, no amount; the payer types the amount and pays with POST /v1/payments.
- Checkout (EMVCo dynamic, 12): one sale's amount, the till's label (62/07) and the
  checkout id (62/05), valid until `expires_at`. Paid once: a second payment answers
  409 checkout_already_paid, a late one 409 checkout_expired. The checkout is marked
  paid by a conditional update before any money moves, so of two payers at once the
  second is refused without being charged.
- Pay code (protocol.signed_qr): the till sends what it scanned; the gateway verifies
  the certificate and the wallet's signature against its own issuer keys, refuses a
  denied card, a code above its limit, and a nonce it has seen (table
  checkout_pay_code_nonces, whose primary key takes the nonce once, before the
  payment), then pays wallet -> merchant.

All functions run in the caller's transaction; payments go through
gateway.core.payments.create_payment, so they emit `payment.succeeded`.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from gateway.core import iso, issuer, new_id, unix
from gateway.core.bills import check_city, check_mcc
from gateway.core.caller import Caller
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.core.merchants import check_latin, code_names
from gateway.core.payments import create_payment
from gateway.store import checkout as checkout_db
from gateway.store import issuer as issuer_db
from gateway.store import terminals as terminals_db
from protocol import emvqr, signed_qr

DEFAULT_CITY = "Beijing"
DEFAULT_MCC = "5411"  # grocery stores and supermarkets: the shop pilot
DEFAULT_CHECKOUT_SECONDS = 300
MAX_CHECKOUT_SECONDS = 3600


# -- the merchant's QR profile and static code ----------------------------------------------

def merchant_for(tx, caller: Caller, merchant_id: str) -> dict:
    """The merchant if the caller is the operator, the merchant or one of its terminals."""
    row = checkout_db.merchant_with_profile(tx, merchant_id)
    if row is None or not (caller.kind == "operator" or
                           (caller.kind in ("merchant", "terminal") and caller.merchant_id == merchant_id)):
        raise not_found("merchant", "merchant_id")
    return row


def profile_view(row: dict, city_latin: str | None = None) -> dict:
    return {"object": "qr_profile", "merchant_id": row["id"], "name": row["name"],
            "city": row["city"] or DEFAULT_CITY, "city_latin": city_latin, "mcc": row["mcc"] or DEFAULT_MCC,
            "store_label": row["store_label"]}


def set_profile(tx, caller: Caller, merchant_id: str, *, city: str, mcc: str | None,
                store_label: str | None, now: datetime, city_latin: str | None = None) -> dict:
    """What the merchant's codes show besides its name: city (in any script; city_latin is
    then what field 60 shows), category and store label."""
    if caller.kind not in ("operator", "merchant"):
        raise not_found("merchant", "merchant_id")
    merchant_for(tx, caller, merchant_id)
    if store_label is not None and (not isinstance(store_label, str) or not 0 < len(store_label) <= 25
                                    or not emvqr.is_ans(store_label)):
        raise Invalid("invalid_parameter", "store_label must be 1 to 25 Latin letters, digits, spaces or "
                                           "punctuation.", "store_label")
    city_latin = check_latin(city_latin, 15, "city_latin")
    checkout_db.put_profile(tx, merchant_id=merchant_id, city=check_city(city), mcc=check_mcc(mcc or DEFAULT_MCC),
                            store_label=store_label, updated_at=unix(now), city_latin=city_latin)
    return profile_view(merchant_for(tx, caller, merchant_id), city_latin)


def _names(tx, merchant_id: str) -> emvqr.Names:
    return code_names(tx, merchant_id, as_biller=False, default_city=DEFAULT_CITY)


def static_payload(tx, caller: Caller, merchant_id: str) -> str:
    """The merchant's static EMVCo code: printed once, the payer enters the amount."""
    row = merchant_for(tx, caller, merchant_id)
    p = profile_view(row)
    return emvqr.merchant_code(merchant_id=merchant_id, mcc=p["mcc"], currency=row["currency"],
                               store_label=p["store_label"], **_names(tx, merchant_id).code_args())


# -- checkouts ------------------------------------------------------------------------------

def checkout_status(row: dict, now: datetime) -> str:
    if row["status"] == "open" and unix(now) >= row["expires_at"]:
        return "expired"
    return row["status"]


def _payload(row: dict, names: emvqr.Names) -> str:
    return emvqr.checkout_code(merchant_id=row["merchant_id"], terminal_label=row["terminal_label"],
                               amount=row["amount"], currency=row["currency"], mcc=row["mcc"] or DEFAULT_MCC,
                               expires_at=datetime.fromtimestamp(row["expires_at"], timezone.utc),
                               reference=row["id"], **names.code_args())


def checkout_view(row: dict, now: datetime, names: emvqr.Names) -> dict:
    return {"id": row["id"], "object": "checkout", "merchant_id": row["merchant_id"],
            "merchant_name": row["merchant_name"], "terminal_id": row["terminal_id"],
            "terminal_label": row["terminal_label"], "amount": row["amount"], "currency": row["currency"],
            "status": checkout_status(row, now), "payment_id": row["payment_id"],
            "expires_at": iso(row["expires_at"]), "created_at": iso(row["created_at"]),
            "paid_at": iso(row["paid_at"]), "qr_payload": _payload(row, names)}


def _label(tx, value, caller: Caller) -> str:
    """The label the code shows (62/07): given, else the terminal's name (or id), else "till"."""
    if value is None and caller.kind == "terminal":
        name = terminals_db.terminal(tx, caller.id)["name"]
        value = name if name and len(name) <= 25 and name.isascii() and name.isprintable() else caller.id[-25:]
    elif value is None:
        value = "till"
    if not isinstance(value, str) or not 0 < len(value) <= 25:
        raise Invalid("invalid_parameter", "terminal_label must be 1 to 25 characters.", "terminal_label")
    return value


def create_checkout(tx, caller: Caller, *, amount: int, currency: str, terminal_label: str | None,
                    expires_in: int | None, now: datetime) -> dict:
    """A one-sale code for the merchant (or its till): amount fixed, single use, short lived."""
    merchant = checkout_db.merchant_with_profile(tx, caller.merchant_id)
    if currency != merchant["currency"]:
        raise Invalid("currency_mismatch", f"The merchant is paid in {merchant['currency']}, not {currency}.",
                      "currency")
    seconds = expires_in or DEFAULT_CHECKOUT_SECONDS
    row = {"id": "chk_" + secrets.token_hex(8), "merchant_id": merchant["id"],
           "terminal_id": caller.id if caller.kind == "terminal" else None,
           "terminal_label": _label(tx, terminal_label, caller), "amount": amount, "currency": currency,
           "status": "open", "payment_id": None, "wallet_id": None,
           "expires_at": unix(now + timedelta(seconds=seconds)), "created_at": unix(now), "paid_at": None}
    checkout_db.insert_checkout(tx, **row)
    return checkout_view({**row, "merchant_name": merchant["name"], "city": merchant["city"],
                          "mcc": merchant["mcc"]}, now, _names(tx, merchant["id"]))


def checkout_row(tx, caller: Caller, checkout_id: str, param: str = "id") -> dict:
    """A checkout the caller may see: the operator, its merchant and terminals, or any wallet (a payer)."""
    row = checkout_db.checkout(tx, checkout_id)
    visible = row is not None and (caller.kind in ("operator", "wallet") or (
        caller.kind in ("merchant", "terminal") and caller.merchant_id == row["merchant_id"]))
    if not visible:
        raise not_found("checkout", param)
    return row


def get_checkout(tx, caller: Caller, checkout_id: str, *, now: datetime) -> dict:
    row = checkout_row(tx, caller, checkout_id)
    return checkout_view(row, now, _names(tx, row["merchant_id"]))


def checkout_payload(tx, caller: Caller, checkout_id: str, *, now: datetime) -> str:
    row = checkout_row(tx, caller, checkout_id)
    _require_open(row, now)
    return _payload(row, _names(tx, row["merchant_id"]))


def _require_open(row: dict, now: datetime) -> None:
    status = checkout_status(row, now)
    if status == "paid":
        raise Conflict("checkout_already_paid", "This checkout is already paid.", "checkout_id")
    if status == "cancelled":
        raise Conflict("checkout_cancelled", "This checkout was cancelled at the till.", "checkout_id")
    if status == "expired":
        raise Conflict("checkout_expired", f"This checkout expired at {iso(row['expires_at'])}; "
                                           "ask the till for a new code.", "checkout_id")


def _close(tx, row: dict, now: datetime, **closing) -> None:
    """Close the open checkout (paid or cancelled) before anything else happens: of two
    closings at once, the second finds it closed and is told how."""
    if not checkout_db.close_checkout(tx, checkout_id=row["id"], **closing):
        _require_open(checkout_db.checkout(tx, row["id"]), now)
        raise Conflict("checkout_changed", "This checkout changed meanwhile; read it again.", "checkout_id")


def pay_checkout(tx, caller: Caller, checkout_id: str, *, now: datetime) -> dict:
    """The calling wallet pays the checkout's amount, once; the payment made."""
    row = checkout_row(tx, caller, checkout_id, "checkout_id")
    if caller.kind != "wallet":
        raise not_found("checkout", "checkout_id")
    _require_open(row, now)
    payment_id = new_id("pay")
    _close(tx, row, now, status="paid", payment_id=payment_id, wallet_id=caller.id, paid_at=unix(now))
    return create_payment(tx, caller, merchant_id=row["merchant_id"], amount=row["amount"],
                          currency=row["currency"], description=f"checkout {checkout_id}", now=now,
                          payment_id=payment_id)


def cancel_checkout(tx, caller: Caller, checkout_id: str, *, now: datetime) -> dict:
    row = checkout_row(tx, caller, checkout_id)
    if caller.kind not in ("merchant", "terminal"):
        raise not_found("checkout", "id")
    _require_open(row, now)
    _close(tx, row, now, status="cancelled")
    return checkout_view({**row, "status": "cancelled"}, now, _names(tx, row["merchant_id"]))


# -- customer-presented pay codes --------------------------------------------------------------

def read_pay_code(tx, text, now: datetime) -> signed_qr.PayCode:
    """A wallet-signed pay code verified against the issuer keys; 400 or 409 saying why not."""
    if not isinstance(text, str) or not text:
        raise Invalid("invalid_parameter", "pay_code must be the text the till scanned.", "pay_code")
    try:
        code = signed_qr.verify(text, issuer.trusted_keys(tx), now)
    except (signed_qr.Expired, signed_qr.NotYetValid) as err:
        raise Conflict(f"pay_code_{err.reason}", f"The pay code is not valid now: {err}.", "pay_code") from None
    except signed_qr.SignedQrError as err:
        raise Invalid("invalid_pay_code", f"The pay code is not genuine ({err.reason}): {err}.",
                      "pay_code") from None
    if not isinstance(code, signed_qr.PayCode):
        raise Invalid("not_a_pay_code", "This is a ticket, not a pay code.", "pay_code")
    return code


def pay_with_pay_code(tx, caller: Caller, *, pay_code: str, amount: int, currency: str,
                      now: datetime) -> dict:
    """The till charges `amount` to the wallet whose signed pay code it scanned; the payment."""
    code = read_pay_code(tx, pay_code, now)
    card_id, nonce = code.card_id.hex(), code.nonce.hex()
    if code.limit is not None and (currency != code.currency or amount > code.limit):
        raise Invalid("above_pay_code_limit", f"The payer allowed at most {code.limit} {code.currency} "
                                              "with this code.", "amount")
    wallet_id = checkout_db.card_wallet_id(tx, card_id)
    if wallet_id is None:
        raise Invalid("invalid_pay_code", "The pay code's card was not issued by this gateway.", "pay_code")
    if issuer_db.denied_entry(tx, card_id) is not None:
        raise Conflict("card_denied", "The pay code's card is on the deny-list.", "pay_code")
    # The nonce is spent first, under its primary key, by the payment about to be made:
    # of two tills presenting one code at once, the second is refused before it charges.
    # It is kept until verify would refuse the code as expired anyway; then it can go.
    payment_id = new_id("pay")
    checkout_db.forget_pay_code_nonces(tx, expired_before=unix(now))
    if not checkout_db.spend_pay_code_nonce(tx, card_id=card_id, nonce=nonce, payment_id=payment_id,
                                            expires_at=unix(code.expires_at) + signed_qr.DEFAULT_SKEW + 1):
        used = checkout_db.pay_code_payment(tx, card_id=card_id, nonce=nonce)
        raise Conflict("pay_code_used", f"This pay code was already used (payment {used}).", "pay_code")
    return create_payment(tx, Caller("wallet", wallet_id), merchant_id=caller.merchant_id,
                          amount=amount, currency=currency, description=f"pay code {nonce}", now=now,
                          payment_id=payment_id)
