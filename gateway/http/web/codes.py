"""What a scanned code asks the payer, in words: the confirm screen's values, or why it
cannot be paid.

`read_code(tx, wallet, text, now=, when=)` reads the text of a QR code the phone found
(by camera, photo or paste) and returns a `Confirm`: whom it pays (the local name when
the code or the gateway has one, the Latin one beside it), how much, which bill or sale,
the due date; or raises `Refusal` with one message a payer understands: no payment code
at all, a damaged one (bad CRC), another scheme's, an expired checkout, a bill already
paid, and so on. `when(unix_seconds)` writes a time in the session's zone.

The services decide; this module only asks them and words the answers. Nothing here
writes: paying happens in gateway.http.web.wallet with the same reading done again inside
the payment's transaction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from gateway.core import bills, checkout, ledger
from gateway.core.caller import Caller
from gateway.core.errors import DomainError
from gateway.store import wallet_views
from protocol import emvqr, signed_qr

MAX_TEXT = 1024  # a QR code holds more, but no payment code does: EMVCo's own limit is 512


class Refusal(Exception):
    """A scanned code the wallet will not pay; `message` says why, for the payer."""

    def __init__(self, title: str, message: str):
        super().__init__(message)
        self.title, self.message = title, message


@dataclass(frozen=True)
class Confirm:
    """What the confirm screen shows and the pay form sends."""
    kind: str                   # bill | checkout | merchant
    target: str                 # the bill, checkout or merchant id
    payee: str                  # the name to show, in the local script when there is one
    payee_latin: str | None     # the Latin name beside it, when it differs
    currency: str
    amount: int | None          # None: a shop's static code, the payer types the amount
    details: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines
    due_date: str | None = None
    warnings: tuple[str, ...] = ()  # rules the code bends, from the liberal reading


def _when_none(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _not_a_payment(text: str) -> Refusal:
    if text.startswith(signed_qr.PREFIX):
        return Refusal("Not a code to pay", "This is a pay code or ride code that a wallet shows to a till or a "
                                            "bus validator. There is nothing to pay with it here.")
    if re.match(r"(?i)(https?://|www\.)", text):
        host = re.sub(r"(?i)^(https?://)?", "", text).split("/")[0][:60]
        return Refusal("Not a payment code", f"This QR code is not a payment code: it holds a web address ({host}), "
                                             "which was not opened. Nothing was paid.")
    return Refusal("Not a payment code", "This QR code is not a payment code: it holds text, not a payment "
                                         "request. Scan the code printed on the bill or shown at the till.")


def parse(text: str) -> emvqr.MerchantQr:
    """The text as an EMVCo payload, read liberally; Refusal saying why not."""
    if not isinstance(text, str) or not text.strip():
        raise Refusal("No code", "No QR code was read. Scan again or choose a photo.")
    text = text.strip()
    if len(text) > MAX_TEXT or not text.startswith("00"):
        raise _not_a_payment(text)
    try:
        return emvqr.parse(text)
    except emvqr.QrFormatError as err:
        if err.field_id == "63" and "wrong CRC" in err.message:
            raise Refusal("Damaged code", "This payment code is damaged: its check digits (CRC) do not match what "
                                          "it holds, so it may have been misread or altered. Scan it again, or ask "
                                          "for a new code. Nothing was paid.") from None
        if err.field_id == "00" and "000201" in err.message:
            raise _not_a_payment(text) from None
        raise Refusal("Unreadable code", f"This payment code cannot be read ({err}). Ask for a new code.") from None


def _names(row: dict | None, merchant_id: str, qr: emvqr.MerchantQr) -> tuple[str, str | None]:
    """(name to show, Latin name beside it): the gateway's record of the merchant (`row`, from
    wallet_views.merchant_names), else what the code says, its local name first. A Latin name
    that is only the stated fallback (the merchant's id) is not shown."""
    shown = row["name"] if row else (qr.local_name or qr.name or merchant_id)
    latin = (row or {}).get("name_latin") or qr.name
    return shown, latin if latin and latin not in (shown, merchant_id[:25]) else None


def read_code(tx, wallet: dict, text: str, *, now: datetime, when: Callable[[int], str] = _when_none) -> Confirm:
    """What paying the code `text` means for this wallet; Refusal with the reason it cannot."""
    qr = parse(text)
    scheme = emvqr.scheme(qr)
    if scheme != "tapstack":
        who = f" for {qr.local_name or qr.name}" if (qr.local_name or qr.name) else ""
        what = f"a {scheme} code{who}" if scheme else f"a payment code of another scheme{who}"
        raise Refusal("Another scheme's code", f"This is {what}. This wallet pays tapstack codes only; "
                                               "use a wallet of that scheme. Nothing was paid.")
    try:
        code = emvqr.read_tapstack(qr, now)
    except emvqr.CodeExpired as err:
        at = when(int(err.expires_at.timestamp()))
        if qr.terminal_label:
            raise Refusal("Checkout expired", f"This checkout code expired at {at}. Ask the cashier for a new "
                                              "one. Nothing was paid.") from None
        raise Refusal("Code expired", f"This bill's code expired at {at}. Ask the biller for a new bill. "
                                      "Nothing was paid.") from None
    except emvqr.QrFormatError as err:
        raise Refusal("Unreadable code", f"This payment code cannot be paid ({err}). Ask for a new code.") from None
    if code.currency != wallet["currency"]:
        raise Refusal("Another currency", f"This code asks for {code.currency}; your wallet holds "
                                          f"{wallet['currency']}. Nothing was paid.")
    warnings = tuple(str(w) for w in qr.warnings)
    caller = Caller("wallet", wallet["id"])
    if code.kind == "bill":
        return _bill(tx, caller, code, qr, warnings, now, when)
    if code.kind == "checkout":
        return _checkout(tx, caller, code, qr, warnings, now, when)
    shop = wallet_views.merchant_names(tx, code.merchant_id)
    if shop is None:
        raise Refusal("Unknown shop", "This shop's code names a shop this gateway does not know. Nothing was paid.")
    payee, latin = _names(shop, code.merchant_id, qr)
    details = [("Store", qr.additional[emvqr.STORE_LABEL])] if qr.additional.get(emvqr.STORE_LABEL) else []
    return Confirm("merchant", code.merchant_id, payee, latin, code.currency, None, details, warnings=warnings)


def _bill(tx, caller, code, qr, warnings, now, when) -> Confirm:
    found = bills.list_bills(tx, caller, now=now, biller_id=code.merchant_id, bill_number=code.bill_number,
                             limit=1)["data"]
    if not found:
        raise Refusal("Unknown bill", f"This gateway knows no bill {code.bill_number} from this biller. "
                                      "Nothing was paid.")
    names = _names(wallet_views.merchant_names(tx, code.merchant_id), code.merchant_id, qr)
    return bill_confirm(found[0], qr_names=names, warnings=warnings, when=when)


def bill_confirm(bill: dict, *, qr_names: tuple[str, str | None] | None = None, warnings: tuple[str, ...] = (),
                 when: Callable[[int], str] = _when_none) -> Confirm:
    """The confirm screen of a bill (a bill view of gateway.core.bills), or why it cannot be paid."""
    number, biller = bill["bill_number"], bill["biller_name"]
    status = bill["status"]
    if status == "paid":
        raise Refusal("Already paid", f"Bill {number} from {biller} is already paid. There is nothing to pay.")
    if status == "cancelled":
        raise Refusal("Bill cancelled", f"Bill {number} from {biller} was cancelled by the biller. "
                                        "There is nothing to pay.")
    if status == "expired":
        at = when(int(datetime.fromisoformat(bill["expires_at"].replace("Z", "+00:00")).timestamp()))
        raise Refusal("Bill expired", f"Bill {number} from {biller} could be paid until {at}. Ask the biller "
                                      "for a new one. Nothing was paid.")
    payee, latin = qr_names or (biller, None)
    details = [("Bill", number), ("Period", bill["period"]), ("Consumer number", bill["consumer_number"])]
    if bill["amount_paid"]:
        details.append(("Paid so far", ledger.format_amount(bill["amount_paid"], bill["currency"])))
    return Confirm("bill", bill["id"], payee, latin, bill["currency"], bill["amount_outstanding"], details,
                   due_date=bill["due_date"], warnings=warnings)


def _checkout(tx, caller, code, qr, warnings, now, when) -> Confirm:
    try:
        sale = checkout.get_checkout(tx, caller, code.reference or "", now=now)
    except DomainError:
        raise Refusal("Unknown checkout", "This checkout is not known here. Ask the cashier for a new code. "
                                          "Nothing was paid.") from None
    if sale["status"] == "paid":
        raise Refusal("Already paid", "This checkout is already paid. There is nothing to pay.")
    if sale["status"] == "cancelled":
        raise Refusal("Checkout cancelled", "This checkout was cancelled at the till. Ask the cashier for a new "
                                            "code. Nothing was paid.")
    if sale["status"] == "expired":
        at = when(int(datetime.fromisoformat(sale["expires_at"].replace("Z", "+00:00")).timestamp()))
        raise Refusal("Checkout expired", f"This checkout code expired at {at}. Ask the cashier for a new one. "
                                          "Nothing was paid.")
    payee, latin = _names(wallet_views.merchant_names(tx, sale["merchant_id"]), sale["merchant_id"], qr)
    details = [("Till", sale["terminal_label"]), ("Reference", sale["id"])]
    return Confirm("checkout", sale["id"], payee, latin, sale["currency"], sale["amount"], details,
                   warnings=warnings)

