"""Utility bills: billers, bills, their EMVCo QR codes, and payments towards them.

A biller is a merchant whose ledger account is of kind "biller": it signs in with the
merchant's API key, gets webhooks at its merchant endpoints and reads its balance like
any merchant, and a `bill_billers` row marks it and holds what its QR codes show.

Payment rules (`payment_amount`, pure):

- a bill takes payments while it is open or partially paid and before `expires_at`;
  a paid bill answers 409 bill_already_paid, a cancelled one 409 bill_cancelled, an
  expired one 409 bill_expired;
- without an amount a payment settles what is outstanding;
- a payment is at least the bill's `minimum_payment` (equal to the amount due unless
  the biller allows part payments), or what is outstanding when that is less;
- overpayment is refused (400 overpayment): a bill is never paid above its amount.

Each payment moves the money wallet -> biller, updates the bill and records a
`bill.paid` event for the biller in one transaction.
"""
from __future__ import annotations

import re
import secrets
from datetime import date, datetime, timedelta, timezone

from gateway.core import MAX_REQUEST_AMOUNT, iso, ledger, unix
from gateway.core.caller import Caller, key_hash, new_key
from gateway.core.errors import Conflict, DomainError, Forbidden, Invalid, not_found
from gateway.core.merchants import add_api_key, check_language, check_latin, code_names
from gateway.core.payments import release_expired_holds
from gateway.core.wallets import require_active, wallet_row
from gateway.core.webhooks import emit
from gateway.store import bills as bills_db
from gateway.store import merchants as merchants_db
from gateway.store import wallet_views
from protocol import emvqr

GRACE_DAYS = 30  # a bill stays payable this many days after its due date unless told otherwise
DEFAULT_MCC = "4900"  # utilities
MAX_BATCH_ROWS = 1000
BILL_FIELDS = ("consumer_number", "period", "amount_due", "currency", "due_date", "bill_number",
               "minimum_payment", "expires_at")
REQUIRED_BILL_FIELDS = ("consumer_number", "period", "amount_due", "currency", "due_date")
OUTSTANDING = ("open", "partially_paid")
PAYMENT_ATTEMPTS = 5  # a payment judged again this often after others of its bill came first

_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,24}")  # fits EMVCo 62/01 and 62/05
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_MCC = re.compile(r"\d{4}")


# -- billers ---------------------------------------------------------------------------

def biller_view(row: dict) -> dict:
    return {"id": row["id"], "object": "biller", "name": row["name"], "name_latin": row.get("name_latin"),
            "language": row.get("name_language"), "currency": row["currency"], "city": row["city"],
            "city_latin": row.get("city_latin"), "mcc": row["mcc"], "created_at": iso(row["created_at"])}


def check_city(city) -> str:
    """A city in any script, as the QR code prints it (field 60, or 64/02 for a local script)."""
    if not isinstance(city, str) or not city.strip() or len(city) > 15:
        raise Invalid("invalid_parameter", "city must be 1 to 15 characters (it is printed in the QR code).",
                      "city")
    return city


def check_mcc(mcc) -> str:
    if not isinstance(mcc, str) or not _MCC.fullmatch(mcc):
        raise Invalid("invalid_parameter", "mcc must be a 4-digit merchant category code.", "mcc")
    return mcc


def create_biller(tx, *, name: str, currency: str, city: str, mcc: str | None, now: datetime,
                  name_latin: str | None = None, city_latin: str | None = None,
                  language: str | None = None) -> tuple[dict, str]:
    """A new biller (a merchant with a biller ledger account) and its API key, shown once.
    Name and city may be in a local script; name_latin and city_latin are what field 59
    and 60 then show (protocol.emvqr.names says what shows without them)."""
    merchant_id = "mer_" + secrets.token_hex(12)
    account_id = ledger.open_account(tx, kind="biller", currency=currency, owner_id=merchant_id,
                                     now=now)["id"]
    api_key = new_key("sk_")
    merchant = {"id": merchant_id, "name": name, "account_id": account_id, "currency": currency,
                "api_key_hash": key_hash(api_key), "created_at": unix(now),
                "name_latin": check_latin(name_latin, 25, "name_latin"), "name_language": check_language(language)}
    biller = {"city": check_city(city), "mcc": check_mcc(mcc or DEFAULT_MCC), "created_at": unix(now),
              "city_latin": check_latin(city_latin, 15, "city_latin")}
    merchants_db.insert_merchant(tx, **merchant)
    add_api_key(tx, merchant_id, api_key, now=unix(now))
    bills_db.insert_biller(tx, merchant_id=merchant_id, **biller)
    return biller_view({**merchant, **biller}), api_key


def biller_row(tx, caller: Caller, biller_id: str, param: str = "id") -> dict:
    """The biller if the caller may see it: the operator or the biller itself."""
    row = bills_db.biller(tx, biller_id)
    if row is None or not (caller.kind == "operator" or
                           (caller.kind == "merchant" and caller.id == biller_id)):
        raise not_found("biller", param)
    names = wallet_views.merchant_names(tx, biller_id)
    return {**row, "name_latin": names["name_latin"], "name_language": names["name_language"],
            "city_latin": names["biller_city_latin"]}


def calling_biller(tx, caller: Caller) -> dict:
    """The calling merchant as a biller; a shop's key may not issue bills."""
    row = bills_db.biller(tx, caller.id) if caller.kind == "merchant" else None
    if row is None:
        raise Forbidden("forbidden", "Only a biller may do this; this merchant is not one.")
    return row


# -- bills: validation (pure) ------------------------------------------------------------

def _text_field(value, name: str) -> str:
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        raise Invalid("invalid_parameter", f"{name} must be 1 to 25 letters, digits or . _ / - "
                                           "(starting with a letter or digit).", name)
    return value


def _money(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("invalid_amount", f"{name} must be an integer of minor units.", name)
    if not 0 < value <= MAX_REQUEST_AMOUNT:
        raise Invalid("invalid_amount", f"{name} must be from 1 to {MAX_REQUEST_AMOUNT}.", name)
    return value


def _date(value, name: str) -> date:
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise Invalid("invalid_parameter", f"{name} must be a date, YYYY-MM-DD.", name)


def parse_time(value, name: str) -> datetime:
    """An ISO 8601 UTC time of the form the API answers, 2026-12-31T23:59:59Z."""
    if isinstance(value, str) and _TIME.fullmatch(value):
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    raise Invalid("invalid_parameter", f"{name} must be a UTC time, YYYY-MM-DDThh:mm:ssZ.", name)


def check_period(value, name: str = "period") -> str:
    if not isinstance(value, str) or not _PERIOD.fullmatch(value):
        raise Invalid("invalid_parameter", f"{name} must be a month, YYYY-MM.", name)
    return value


def check_bill(fields: dict, *, currency: str, now: datetime) -> dict:
    """A bill's fields validated and completed (minimum payment, expiry); DomainError naming the field.

    `currency` is the biller's: a bill is kept in the currency of the account it pays into.
    """
    if not isinstance(fields, dict):
        raise Invalid("invalid_parameter", "A bill is a JSON object.")
    unknown = sorted(set(fields) - set(BILL_FIELDS))
    if unknown:
        raise Invalid("unknown_parameter", f"Unknown field(s): {', '.join(unknown)}.", unknown[0])
    for name in REQUIRED_BILL_FIELDS:
        if fields.get(name) is None:
            raise Invalid("missing_parameter", f"Missing required field: {name}.", name)
    amount_due = _money(fields["amount_due"], "amount_due")
    if fields["currency"] != currency:
        raise Invalid("currency_mismatch", f"This biller bills in {currency}, not {fields['currency']!r}.",
                      "currency")
    minimum = fields.get("minimum_payment")
    minimum = amount_due if minimum is None else _money(minimum, "minimum_payment")
    if minimum > amount_due:
        raise Invalid("invalid_amount", "minimum_payment must not exceed amount_due.", "minimum_payment")
    due = _date(fields["due_date"], "due_date")
    if fields.get("expires_at") is None:
        expires = datetime(due.year, due.month, due.day, tzinfo=timezone.utc) + timedelta(days=GRACE_DAYS + 1)
    else:
        expires = parse_time(fields["expires_at"], "expires_at")
    if expires <= now:
        raise Invalid("invalid_parameter", "expires_at is not in the future: the bill could not be paid.",
                      "expires_at")
    bill_number = fields.get("bill_number")
    return {"consumer_number": _text_field(fields["consumer_number"], "consumer_number"),
            "period": check_period(fields["period"]), "amount_due": amount_due,
            "minimum_payment": minimum, "currency": currency, "due_date": due.isoformat(),
            "expires_at": unix(expires),
            "bill_number": None if bill_number is None else _text_field(bill_number, "bill_number")}


def bill_status(row: dict, now: datetime) -> str:
    """The status a caller sees: the stored one, or `expired` for an unpaid bill past its expiry."""
    if row["status"] in OUTSTANDING and unix(now) >= row["expires_at"]:
        return "expired"
    return row["status"]


def payment_amount(row: dict, requested: int | None, now: datetime) -> int:
    """What a payment towards bill `row` moves, by the rules of the module docstring."""
    status = bill_status(row, now)
    if status == "paid":
        raise Conflict("bill_already_paid", f"Bill {row['bill_number']} is already paid.", "bill_id")
    if status == "cancelled":
        raise Conflict("bill_cancelled", f"Bill {row['bill_number']} was cancelled by the biller.", "bill_id")
    if status == "expired":
        raise Conflict("bill_expired", f"Bill {row['bill_number']} expired at {iso(row['expires_at'])}; "
                                       "ask the biller for a new one.", "bill_id")
    outstanding = row["amount_due"] - row["amount_paid"]
    if requested is None:
        return outstanding
    if requested > outstanding:
        raise Invalid("overpayment", f"{requested} is more than the {outstanding} outstanding on bill "
                                     f"{row['bill_number']}; overpayment is refused.", "amount")
    least = min(row["minimum_payment"], outstanding)
    if requested < least:
        what = "part payments of at least" if least < outstanding else "payment of the whole"
        raise Invalid("below_minimum_payment", f"{requested} is less than this bill allows: it takes "
                                               f"{what} {least}.", "amount")
    return requested


# -- bills ---------------------------------------------------------------------------------

def bill_view(row: dict, biller_name: str, now: datetime) -> dict:
    return {"id": row["id"], "object": "bill", "biller_id": row["biller_id"], "biller_name": biller_name,
            "bill_number": row["bill_number"], "consumer_number": row["consumer_number"],
            "period": row["period"], "amount_due": row["amount_due"], "amount_paid": row["amount_paid"],
            "amount_outstanding": row["amount_due"] - row["amount_paid"],
            "minimum_payment": row["minimum_payment"], "currency": row["currency"],
            "due_date": row["due_date"], "expires_at": iso(row["expires_at"]),
            "status": bill_status(row, now), "created_at": iso(row["created_at"]),
            "paid_at": iso(row["paid_at"]), "cancelled_at": iso(row["cancelled_at"])}


def _insert_bill(tx, biller: dict, fields: dict, now: datetime) -> dict:
    """Insert the bill under its number, or a new number when it has none (the biller's
    numbers are unique: a number taken, perhaps by a bill made at this moment, is refused)."""
    while True:
        number = fields["bill_number"] or "B" + secrets.token_hex(6).upper()
        row = {**fields, "id": "bill_" + secrets.token_hex(8), "biller_id": biller["id"], "bill_number": number,
               "amount_paid": 0, "status": "open", "created_at": unix(now), "paid_at": None,
               "cancelled_at": None}
        if bills_db.insert_bill(tx, row):
            return bill_view(row, biller["name"], now)
        if fields["bill_number"] is not None:
            raise Conflict("duplicate_bill_number", f"This biller already has a bill {number}.", "bill_number")


def create_bill(tx, caller: Caller, fields: dict, *, now: datetime) -> dict:
    biller = calling_biller(tx, caller)
    return _insert_bill(tx, biller, check_bill(fields, currency=biller["currency"], now=now), now)


def create_batch(tx, caller: Caller, rows: list, *, now: datetime, first_row: int = 1) -> dict:
    """Create each row's bill; a bad row is reported by number and the good ones are kept.

    Rows are numbered from `first_row` (1 for JSON; 2 for CSV, the header being line 1);
    a row may be an DomainError already, for a line the CSV parser could not read.
    """
    biller = calling_biller(tx, caller)
    if not isinstance(rows, list) or not rows:
        raise Invalid("invalid_parameter", "bills must be a non-empty list of bills.", "bills")
    if len(rows) > MAX_BATCH_ROWS:
        raise Invalid("batch_too_large", f"A batch holds at most {MAX_BATCH_ROWS} bills; split it.", "bills")
    created, errors = [], []
    for number, fields in enumerate(rows, start=first_row):
        try:
            if isinstance(fields, DomainError):  # a row the parser already found unreadable
                raise fields
            with tx.savepoint():
                created.append(_insert_bill(tx, biller, check_bill(fields, currency=biller["currency"], now=now),
                                            now))
        except DomainError as err:
            errors.append({"row": number, "code": err.code, "message": err.message, "param": err.param})
    return {"object": "bill_batch", "rows": len(rows), "accepted": len(created), "rejected": len(errors),
            "bills": created, "errors": errors}


def bill_row(tx, caller: Caller, bill_id: str, param: str = "id") -> dict:
    """A bill the caller may see: the operator, its biller, or any wallet (a payer)."""
    row = bills_db.bill(tx, bill_id)
    visible = row is not None and (caller.kind in ("operator", "wallet") or
                                   (caller.kind == "merchant" and caller.id == row["biller_id"]))
    if not visible:
        raise not_found("bill", param)
    return row


def get_bill(tx, caller: Caller, bill_id: str, *, now: datetime) -> dict:
    row = bill_row(tx, caller, bill_id)
    return bill_view(row, row["biller_name"], now)


def list_bills(tx, caller: Caller, *, now: datetime, biller_id: str | None = None,
               consumer_number: str | None = None, bill_number: str | None = None,
               period: str | None = None, status: str | None = None, limit: int = 20,
               after: str | None = None) -> dict:
    """Bills, newest first. A wallet names the biller and a consumer number (it sees what is
    still payable) or a bill number (it sees that bill, paid or not); a biller sees its own;
    the operator names a biller."""
    if caller.kind == "merchant":
        if biller_id not in (None, caller.id):
            raise not_found("biller", "biller_id")
        biller_id = caller.id
    elif biller_id is None:
        raise Invalid("missing_parameter", "Name the biller: ?biller_id=.", "biller_id")
    if caller.kind == "wallet" and consumer_number is None and bill_number is None:
        raise Invalid("missing_parameter", "Name a consumer_number or a bill_number.", "consumer_number")
    # A payer holding a bill's number may learn it was paid; by consumer number it sees what is payable.
    if caller.kind == "wallet" and bill_number is None:
        status = "outstanding"
    position = None
    if after is not None:
        position = bills_db.bill_position(tx, bill_id=after, biller_id=biller_id)
        if position is None:
            raise Invalid("invalid_cursor", "after is not a bill in this list.", "after")
    rows = bills_db.bills_page(tx, biller_id=biller_id, now=unix(now), limit=limit + 1,
                               consumer_number=consumer_number, bill_number=bill_number, period=period,
                               status=status, after=position)
    page = rows[:limit]
    has_more = len(rows) > limit
    return {"object": "list", "data": [bill_view(r, r["biller_name"], now) for r in page],
            "has_more": has_more, "next_cursor": page[-1]["id"] if has_more else None}


def qr_payload(tx, caller: Caller, bill_id: str, *, now: datetime) -> str:
    """The bill's dynamic EMVCo code for what is outstanding now; 409 once nothing can be paid."""
    row = bill_row(tx, caller, bill_id)
    amount = payment_amount(row, None, now)
    return emvqr.bill_code(biller_id=row["biller_id"], bill_number=row["bill_number"],
                           reference=row["consumer_number"], amount=amount, currency=row["currency"],
                           expires_at=datetime.fromtimestamp(row["expires_at"], timezone.utc),
                           mcc=row["biller_mcc"], **code_names(tx, row["biller_id"], as_biller=True).code_args())


def cancel_bill(tx, caller: Caller, bill_id: str, *, now: datetime) -> dict:
    """The biller withdraws a bill nobody has paid anything towards."""
    row = bill_row(tx, caller, bill_id)
    if caller.kind != "merchant":
        raise not_found("bill", "id")
    if row["status"] != "open" or row["amount_paid"]:
        raise Conflict(f"bill_{row['status']}", f"Only an unpaid open bill can be cancelled; this one is "
                                                f"{row['status']}.", "id")
    if not bills_db.cancel_bill(tx, bill_id=bill_id, at=unix(now)):  # paid towards meanwhile
        row = bill_row(tx, caller, bill_id)
        raise Conflict(f"bill_{row['status']}", f"Only an unpaid open bill can be cancelled; this one is "
                                                f"{row['status']}.", "id")
    return bill_view({**row, "status": "cancelled", "cancelled_at": unix(now)}, row["biller_name"], now)


# -- payments ------------------------------------------------------------------------------

def bill_payment_view(row: dict) -> dict:
    """A bill payment: the payer's receipt and the biller's reconciliation line."""
    return {"id": row["id"], "object": "bill_payment", "bill_id": row["bill_id"],
            "biller_id": row["biller_id"], "biller_name": row["biller_name"], "wallet_id": row["wallet_id"],
            "bill_number": row["bill_number"], "consumer_number": row["consumer_number"],
            "period": row["period"], "amount": row["amount"], "currency": row["currency"],
            "created_at": iso(row["created_at"])}


def pay_bill(tx, caller: Caller, bill_id: str, *, amount: int | None, now: datetime,
             param: str = "bill_id") -> dict:
    """The calling wallet pays `amount` (all that is outstanding when None) towards the bill."""
    wallet = wallet_row(tx, caller, caller.id, "wallet_id")
    require_active(wallet)
    bill = bill_row(tx, caller, bill_id, param)
    paid = payment_amount(bill, amount, now)
    if wallet["currency"] != bill["currency"]:
        raise Invalid("currency_mismatch", f"The wallet is kept in {wallet['currency']}, the bill in "
                                           f"{bill['currency']}.", "currency")
    release_expired_holds(tx, now=now)
    # The bill counts the payment only if its rules take it now, in one conditional update
    # (which waits for a payment of the bill in flight on another node). If another payment
    # came first, the bill is judged again as it is now: paid, or less outstanding.
    for _ in range(PAYMENT_ATTEMPTS):
        counted = bills_db.add_payment(tx, bill_id=bill_id, amount=paid, now=unix(now))
        if counted is not None:
            break
        bill = bill_row(tx, caller, bill_id, param)
        paid = payment_amount(bill, amount, now)
    else:
        raise Conflict("concurrent_bill_payment", "Other payments of this bill happened meanwhile; retry.")
    payment_id = "bpay_" + secrets.token_hex(12)  # also the transfer's id: bill_payments links the two
    row = {"id": payment_id, "bill_id": bill_id, "biller_id": bill["biller_id"], "wallet_id": wallet["id"],
           "amount": paid, "currency": bill["currency"], "period": bill["period"], "transfer_id": payment_id,
           "created_at": unix(now)}
    bills_db.insert_payment(tx, **row)
    receipt = bill_payment_view({**row, "biller_name": bill["biller_name"], "bill_number": bill["bill_number"],
                                 "consumer_number": bill["consumer_number"]})
    after = {**bill, **counted}
    receipt["bill"] = bill_view(after, bill["biller_name"], now)
    emit(tx, merchant_id=bill["biller_id"], event_type="bill.paid", data=receipt, now=now)
    # The money last, so the biller's account row (every payer's) is locked only from here to
    # the commit; a refusal leaves the rows above to the caller's rollback (services/payments.py).
    ledger.transfer(tx, transfer_id=payment_id, debit_account_id=wallet["account_id"],
                    credit_account_id=bill["biller_account_id"], amount=paid, currency=bill["currency"],
                    code="bill_payment", now=now)
    return receipt


def read_bill_code(payload, now: datetime) -> emvqr.TapstackCode:
    """A scanned bill code, checked; 400 for anything that is not a live tapstack bill code."""
    if not isinstance(payload, str) or not payload:
        raise Invalid("invalid_parameter", "payload must be the text of the bill's QR code.", "payload")
    try:
        code = emvqr.read_tapstack(emvqr.parse(payload), now)
    except emvqr.CodeExpired as err:
        raise Conflict("bill_expired", f"The bill's code has expired ({err.message}).", "payload") from None
    except emvqr.QrFormatError as err:
        raise Invalid("invalid_qr_code", f"Not a valid EMVCo code: {err}.", "payload") from None
    if code.kind != "bill":
        raise Invalid("not_a_bill_code", f"This is a {code.kind} code, not a bill.", "payload")
    return code


def pay_by_payload(tx, caller: Caller, payload, *, amount: int | None, now: datetime) -> dict:
    """Pay the bill a scanned code names, by default the amount the code shows."""
    code = read_bill_code(payload, now)
    row = bills_db.bill_by_number(tx, biller_id=code.merchant_id, bill_number=code.bill_number)
    if row is None:
        raise not_found("bill (the code names none)", "payload")
    if code.currency != row["currency"]:
        raise Invalid("currency_mismatch", "The code's currency is not the bill's.", "payload")
    return pay_bill(tx, caller, row["id"], amount=code.amount if amount is None else amount, now=now,
                    param="payload")


def get_bill_payment(tx, caller: Caller, payment_id: str) -> dict:
    row = bills_db.payment(tx, payment_id)
    visible = row is not None and (caller.kind == "operator"
                                   or (caller.kind == "wallet" and caller.id == row["wallet_id"])
                                   or (caller.kind == "merchant" and caller.id == row["biller_id"]))
    if not visible:
        raise not_found("bill payment", "id")
    return bill_payment_view(row)


def list_bill_payments(tx, caller: Caller, *, period: str | None = None, biller_id: str | None = None,
                       limit: int = 20, after: str | None = None) -> dict:
    """The caller's bill payments, newest first, with totals over the whole selection (all
    pages) per currency: what a biller reconciles a period against."""
    # A biller sees the payments to it, a payer its own; the operator all.
    filters = {"biller_id": biller_id, "period": period}
    if caller.kind == "merchant":
        filters["biller_id"] = caller.id
    elif caller.kind == "wallet":
        filters["wallet_id"] = caller.id
    visible = caller.kind != "merchant" or biller_id in (None, caller.id)
    totals = bills_db.payment_totals(tx, **filters) if visible else []
    position = None
    if after is not None:
        position = bills_db.payment_position(tx, after, **filters) if visible else None
        if position is None:
            raise Invalid("invalid_cursor", "after is not a bill payment in this list.", "after")
    rows = bills_db.payments_page(tx, limit=limit + 1, after=position, **filters) if visible else []
    page = rows[:limit]
    has_more = len(rows) > limit
    return {"object": "list", "period": period, "data": [bill_payment_view(r) for r in page],
            "has_more": has_more, "next_cursor": page[-1]["id"] if has_more else None,
            "totals": [{"currency": t["currency"], "count": t["count"], "amount": t["amount"]} for t in totals]}
