"""The shop till's decisions, as plain functions over plain values.

A `Sale` is what the cashier rang up: an amount in minor units, a currency and a
reference. It stays open until the customer pays it (a purse tap, a pay code, a
checkout QR paid from the wallet app) or the cashier cancels it. A refused payment
keeps it open: the customer tries again, another way, or pays cash.

    open --purse tap / pay code / checkout paid--> paid
    open --pay code authorised, capture not answered--> capturing --capture--> paid
    open --cancel--> cancelled

This module parses the cashier's commands (amounts exactly, never through a float),
says what a scanned text is, turns a purse tap, an offline check of a signed pay code
or a gateway answer into a `Result`, and derives every Idempotency-Key from the sale
id, so a call retried after a timeout is the same request and charges once.
Nothing here reads a clock, a file, a reader or the network.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

from protocol import currency as iso4217
from protocol.currency import money
from protocol import signed_qr
from protocol.uplink import SaleRecord
from protocol.uplink.records import LEGACY_TILL_ROUTE

OPEN, CAPTURING, PAID, CANCELLED = "open", "capturing", "paid", "cancelled"
GATEWAY_PAY_CODE_PREFIX = "pc_"  # the gateway's own single-use codes (POST /v1/wallets/<id>/pay_codes)
UNREACHABLE = "gateway unreachable: ask for a card tap or cash"
NO_BANK_CARDS = "bank cards are not taken here: tapstack does not authorise bank cards online"

# What the customer and the cashier read for each refusal (gateway error codes included).
MESSAGES = {
    "paid": "Paid from the card",
    "recovered": "Paid from the card (completed the interrupted tap)",
    "pay_code": "Paid by pay code",
    "checkout": "Paid by QR",
    "insufficient_balance": "Card balance too low",
    "insufficient_funds": "Wallet balance too low",
    "deny_listed": "Card blocked",
    "card_denied": "Card blocked",
    "card_locked": "Card locked",
    "wallet_locked": "Wallet locked",
    "wrong_currency": "Card not valid here",
    "journal_unavailable": "Out of service: not paid, tap again later",
    "currency_mismatch": "Not payable in this currency",
    "bad_certificate": "Card not recognised",
    "counter_rollback": "Card not valid",
    "card_refused": "Card refused the payment",
    "bank_card": NO_BANK_CARDS,
    "unknown_card": "Card not recognised",
    "random_uid": "Card not recognised",
    "card_removed": "Hold the card still and tap again",
    "card_fault": "Tap again",
    "bad_receipt": "Tap again",
    "garbage": "Card not readable",
    "emv_error": "Card not readable",
    "reader_error": "Reader problem",
    "internal_error": "Till problem",
    "no_sale": "No sale open: ring up an amount first",
    "above_card_limit": "Too much for a card payment: use a pay code or QR",
    "checkout_open": "A QR code is open for this sale: cancel it or wait for it",
    "not_a_pay_code": "Not a pay code",
    "bad_pay_code": "Pay code not valid",
    "pay_code_expired": "Pay code expired: ask for a new one",
    "pay_code_not_yet_valid": "Pay code not valid yet: check the phone's clock",
    "pay_code_used": "Pay code already used",
    "pay_code_unknown": "Pay code unknown, used or expired",
    "above_pay_code_limit": "Amount above the pay code's limit",
    "checkout_expired": "QR code expired",
    "checkout_cancelled": "QR code cancelled",
    "unreachable": UNREACHABLE,
    "refused": "Refused by the gateway",
}


class CommandError(ValueError):
    """A cashier's line that is not a command; str() is the one line to show."""


# --- amounts and commands --------------------------------------------------------------

def parse_amount(text: str, currency: str) -> int:
    """"12.50" in CNY -> 1250 minor units, exactly (as many decimals as ISO 4217 gives the
    currency, never a float); CommandError saying why not."""
    try:
        amount = iso4217.parse_decimal(text.strip(), currency)
    except (iso4217.UnknownCurrency, iso4217.AmountError) as e:
        raise CommandError(str(e)) from None
    if amount == 0:
        raise CommandError(f"{text.strip()!r} is zero: a sale or refund needs an amount")
    return amount


@dataclass(frozen=True)
class Command:
    """One cashier command: verb plus what it needs.

    sale AMOUNT [REFERENCE] | qr | code TEXT | cancel | refund PAYMENT_ID [AMOUNT] | status | quit
    """
    verb: str
    amount: int | None = None
    reference: str | None = None
    payment_id: str | None = None
    text: str | None = None


USAGE = "commands: sale AMOUNT [REF] | qr | code TEXT | cancel | refund PAYMENT_ID [AMOUNT] | status | quit"


def parse_command(line: str, currency: str) -> Command:
    words = line.split()
    if not words:
        raise CommandError(USAGE)
    verb, args = words[0].lower(), words[1:]
    if verb == "sale" and 1 <= len(args) <= 2:
        reference = args[1] if len(args) == 2 else None
        if reference is not None and not _is_word(reference):
            raise CommandError("a sale reference is 1 to 40 of A-Z a-z 0-9 . _ -")
        return Command("sale", amount=parse_amount(args[0], currency), reference=reference)
    if verb == "refund" and 1 <= len(args) <= 2:
        if not args[0].startswith("pay_"):
            raise CommandError("refund takes a payment id (pay_...) and an optional amount")
        return Command("refund", payment_id=args[0],
                       amount=parse_amount(args[1], currency) if len(args) == 2 else None)
    if verb == "code" and len(args) == 1:
        return Command("code", text=args[0])
    if verb in ("qr", "cancel", "status", "quit", "help") and not args:
        return Command(verb)
    raise CommandError(f"not a command: {line.strip()[:60]!r}; {USAGE}")


def _is_word(text: str) -> bool:
    return 0 < len(text) <= 40 and all(c.isascii() and (c.isalnum() or c in "._-") for c in text)


# --- the sale --------------------------------------------------------------------------

@dataclass(frozen=True)
class Sale:
    id: str  # unique per till; every Idempotency-Key of the sale derives from it
    amount: int  # minor units
    currency: str
    reference: str | None
    opened_at: datetime
    state: str = OPEN
    method: str | None = None  # purse, pay_code, signed_pay_code, checkout
    payment_id: str | None = None  # the gateway's pay_... (purse sales have a tap id instead)
    tap_id: str | None = None
    authorization_id: str | None = None  # a pay code's hold while it is captured
    checkout_id: str | None = None
    checkouts: int = 0  # checkout codes made for this sale (a new one after one expires)
    balance_after: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state in (OPEN, CAPTURING)

    def to_json(self) -> dict:
        """The form kept in the till's journal, so a restarted till finishes a capture."""
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "opened_at"},
                "opened_at": self.opened_at.isoformat()}

    @classmethod
    def from_json(cls, doc: dict) -> Sale:
        return cls(**{**doc, "opened_at": datetime.fromisoformat(doc["opened_at"])})


def open_sale(sale_id: str, amount: int, currency: str, reference: str | None, now: datetime) -> Sale:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError("a sale amount is a positive integer of minor units")
    iso4217.get(currency)
    return Sale(sale_id, amount, currency, reference, now)


def sale_id(terminal_id: bytes, journal_salt: str, number: int) -> str:
    """"<terminal id hex>-<salt>-<number>". The salt is drawn once per journal: a till whose
    journal was replaced counts its sales from 1 again, and its keys must not meet the old
    ones (an old checkout's key would replay that checkout, paid long ago)."""
    return f"{terminal_id.hex()}-{journal_salt}-{number:08d}"


def idempotency_key(sale: Sale, step: str, detail: str = "") -> str:
    """The Idempotency-Key of one online step of a sale: the same step of the same sale is
    the same key (a retry replays the first answer), a new pay code or checkout a new one.
    `detail` (a pay code, an authorisation id) is hashed: a pay code never leaves the till
    as a header."""
    tail = hashlib.sha256(detail.encode()).hexdigest()[:16] if detail else "-"
    return f"till-{sale.id}-{step}-{tail}"


# --- results ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """What one payment attempt came to, for the display."""
    approved: bool
    reason: str
    method: str  # purse, pay_code, signed_pay_code, checkout, card
    message: str
    amount: int | None = None
    currency: str | None = None
    balance_after: int | None = None
    payment_id: str | None = None
    tap_id: str | None = None  # a purse payment's journal row, cleared later through POST /v1/taps
    detail: str = ""


def message(reason: str) -> str:
    return MESSAGES.get(reason, reason.replace("_", " ").capitalize())


def refused(reason: str, method: str, detail: str = "") -> Result:
    return Result(False, reason, method, message(reason), detail=detail)


def tap_result(decision) -> Result:
    """A purse tap's terminal.card.Decision as the till's Result. A bank (EMV) card or
    a plain UID card is refused: the till takes purses only, offline."""
    if decision.kind in ("emv", "uid"):
        return refused("bank_card" if decision.kind == "emv" else "unknown_card", "card")
    if not decision.accepted:
        return refused(decision.reason, decision.kind, decision.detail)
    return Result(True, decision.reason, "purse", message(decision.reason), decision.amount, decision.currency,
                  decision.balance_after)


def sale_record(decision, sale_id: str) -> SaleRecord:
    """A card's terminal.card.Decision at the till as the sale record the journal keeps
    and POST /v1/sales takes (the record id is the journal's)."""
    return SaleRecord(int(decision.at.timestamp()), sale_id, decision.kind, decision.accepted, decision.reason,
                      decision.amount, decision.currency, decision.balance_after, decision.card_id,
                      decision.token, decision.receipt)


def journalled_sale(row: dict) -> str | None:
    """The sale id a journal row paid for: a sale record's, or that of a tap on route
    LEGACY_TILL_ROUTE, as tills journalled sales before sale records."""
    if "sale" in row:
        return row["sale"]
    return row.get("stop") if row.get("route") == LEGACY_TILL_ROUTE else None


def paid(sale: Sale, method: str, *, payment_id: str | None = None, tap_id: str | None = None,
         balance_after: int | None = None) -> Sale:
    return replace(sale, state=PAID, method=method, payment_id=payment_id, tap_id=tap_id,
                   balance_after=balance_after)


# --- scanned codes ---------------------------------------------------------------------

def code_kind(text: str) -> str:
    """gateway_pay_code (pc_...), signed_pay_code (TS:...) or other."""
    text = text.strip()
    if text.startswith(GATEWAY_PAY_CODE_PREFIX) and 8 <= len(text) <= 100:
        return "gateway_pay_code"
    if text.startswith(signed_qr.PREFIX):
        return "signed_pay_code"
    return "other"


def check_signed_code(sale: Sale, text: str, issuer_keys, seen: dict, now: datetime
                      ) -> tuple[Result | None, dict]:
    """Verify a wallet-signed pay code offline before anything goes online: the issuer's
    certificate, the wallet's signature, the time, a ticket shown instead, the code's limit,
    a code this till has already seen. (None, new seen-set) when it may be sent on."""
    try:
        code = signed_qr.verify(text, issuer_keys, now)
    except signed_qr.UnknownIssuer as e:
        return refused("bad_pay_code", "signed_pay_code", f"{e} (issuer keys not downloaded yet?)"), seen
    except signed_qr.Expired as e:
        return refused("pay_code_expired", "signed_pay_code", str(e)), seen
    except signed_qr.NotYetValid as e:
        return refused("pay_code_not_yet_valid", "signed_pay_code", str(e)), seen
    except signed_qr.SignedQrError as e:
        return refused("bad_pay_code", "signed_pay_code", str(e)), seen
    if not isinstance(code, signed_qr.PayCode):
        return refused("not_a_pay_code", "signed_pay_code", "a ticket is for a bus, not a till"), seen
    if code.limit is not None and (code.currency != sale.currency or sale.amount > code.limit):
        return refused("above_pay_code_limit", "signed_pay_code",
                       f"the customer allowed at most {iso4217.decimal_text(code.limit, code.currency)} "
                       f"{code.currency}"), seen
    try:
        seen = signed_qr.refuse_replay(code, seen, now)
    except signed_qr.Replayed as e:
        return refused("pay_code_used", "signed_pay_code", str(e)), seen
    return None, seen


def gateway_refusal(status: int, error: dict, method: str) -> Result:
    """A 4xx answer of the gateway as a refusal the customer can act on."""
    code = str(error.get("code") or "")
    if status == 404 and method == "pay_code" and error.get("param") == "pay_code":
        code = "pay_code_unknown"
    if code in ("invalid_pay_code", "not_a_pay_code"):
        code = "bad_pay_code"
    reason = code if code in MESSAGES else "refused"
    return refused(reason, method, str(error.get("message") or ""))


# --- the display -----------------------------------------------------------------------

def sale_line(sale: Sale) -> str:
    ref = f"  ref {sale.reference}" if sale.reference else ""
    if sale.state == OPEN:
        return (f"SALE      {money(sale.amount, sale.currency)}{ref}   sale {sale.id}: "
                "tap a card, show a pay code, or type qr")
    if sale.state == CAPTURING:
        return f"SALE      {money(sale.amount, sale.currency)}{ref}   authorised {sale.authorization_id}, capturing"
    return f"{sale.state.upper():<9} {money(sale.amount, sale.currency)}{ref}   sale {sale.id}"


def panel(sale: Sale | None, result: Result) -> list[str]:
    """The outcome of one attempt: approved or declined with why, what was paid, the balance
    left on a purse, the payment (or tap) id; a declined sale says it is still open."""
    head = "APPROVED " if result.approved else "DECLINED "
    words = [result.message]
    if result.approved and result.amount is not None and result.currency:
        words[0] += f" {money(result.amount, result.currency)}"
    if result.balance_after is not None and result.currency:
        words.append(f"balance {money(result.balance_after, result.currency)}")
    if result.payment_id:
        words.append(f"payment {result.payment_id}")
    if result.tap_id:
        words.append(f"tap {result.tap_id}")
    lines = [f"{head} {'   '.join(words)}"]
    if result.detail and not result.approved:
        lines.append(f"          ({result.detail})")
    if sale is not None and sale.is_open and not result.approved:
        lines.append(f"          sale {sale.id} still open: {money(sale.amount, sale.currency)}")
    return lines
