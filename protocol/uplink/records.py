"""The records a terminal uploads: taps (bus validators) and sales (shop tills).

One table of fields per record, one JSON form, one validation, used by both sides:
the terminal journals and uploads `to_json()`, the gateway judges an upload row with
the same field table and patterns (and `from_json` where a whole record is wanted).

A tap row:

    {"id": "<terminal>-<seq>", "at": <unix s>, "kind": "purse|emv|uid|qr|unknown|error",
     "accepted": bool, "reason": word, "route": word|null, "stop": word|null,
     "rules_version": int|null, "amount": minor units|null, "currency": "CNY"|null,
     "balance_after": int|null, "card_id": 16 hex|null, "token": "pan_..."|"uid_..."|null,
     "receipt": hex|null[, "direction": "off"]}

A tap-on says no direction (a row without one is a tap-on, as every gateway reads it).

A sale row is a card presented at a till to pay sale `sale` (the till's sale id):

    {"id": ..., "at": ..., "sale": word, "kind": ..., "accepted": ..., "reason": ...,
     "amount": ..., "currency": ..., "balance_after": ..., "card_id": ..., "token": ...,
     "receipt": ...}

`id` is the journal's: a record made before it is journalled has none, and its JSON
then has no "id" (the journal's body); an upload row always has one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from protocol import purse, tokens

KINDS = ("purse", "emv", "uid", "qr", "unknown", "error")
DIRECTIONS = ("on", "off")
TOKEN_KINDS = ("emv", "uid")  # taps that carry a keyed-hash token, never a card id

ID = re.compile(r"[A-Za-z0-9_.:\-]{1,80}")
WORD = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
CARD_ID = re.compile(f"[0-9a-f]{{{2 * purse.ID_SIZE}}}")
CURRENCY = re.compile(r"[A-Z]{3}")
RECEIPT = re.compile(f"[0-9a-f]{{{2 * purse.RECEIPT_SIZE}}}")
MAX_AT = 2**32 - 1
MAX_RULES_VERSION = 2**53

TAP_FIELDS = frozenset({"id", "at", "kind", "accepted", "reason", "route", "stop", "rules_version", "amount",
                        "currency", "balance_after", "card_id", "token", "receipt", "direction"})
SALE_FIELDS = frozenset({"id", "at", "sale", "kind", "accepted", "reason", "amount", "currency",
                         "balance_after", "card_id", "token", "receipt"})
REQUIRED = ("id", "at", "kind", "accepted", "reason")
# Tills journalled and uploaded their sales as taps on this route, the sale id as the stop,
# before sale records; the gateway still takes such rows, as sales (sale_from_legacy_tap).
LEGACY_TILL_ROUTE = "pos"


class RecordError(ValueError):
    """Why an upload row is not a record: a short code and words."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TapRecord:
    at: int
    kind: str
    accepted: bool
    reason: str
    route: str | None
    stop: str | None
    rules_version: int | None = None
    amount: int | None = None  # debited from a purse, minor units
    currency: str | None = None
    balance_after: int | None = None
    card_id: str | None = None  # hex; purse cards and QR tickets
    token: str | None = None  # EMV and UID keyed-hash tokens (never a card number)
    receipt: str | None = None  # hex of the purse's signed receipt
    direction: str = "on"
    id: str | None = None

    def to_json(self) -> dict:
        body = {"at": self.at, "kind": self.kind, "accepted": self.accepted, "reason": self.reason,
                "route": self.route, "stop": self.stop, "rules_version": self.rules_version,
                "amount": self.amount, "currency": self.currency, "balance_after": self.balance_after,
                "card_id": self.card_id, "token": self.token, "receipt": self.receipt}
        if self.direction != "on":
            body["direction"] = self.direction
        return body if self.id is None else {"id": self.id, **body}

    @classmethod
    def from_json(cls, row) -> TapRecord:
        """An upload row as a TapRecord; RecordError saying why it is not one."""
        common = _common(row, TAP_FIELDS)
        direction = row.get("direction") or "on"
        if direction not in DIRECTIONS:
            raise RecordError("invalid_field", "direction must be on or off")
        record = cls(**common, route=text(row.get("route"), "route", WORD), stop=text(row.get("stop"), "stop", WORD),
                     rules_version=integer(row.get("rules_version"), "rules_version", 0, MAX_RULES_VERSION),
                     direction=direction)
        if record.accepted and record.kind == "purse" and direction == "on" \
                and None in (record.card_id, record.receipt, record.amount, record.currency):
            raise RecordError("missing_field", "an accepted purse tap carries card_id, amount, currency and receipt")
        if record.accepted and record.kind == "purse" and direction == "off" and record.card_id is None:
            raise RecordError("missing_field", "an accepted purse tap-off carries its card_id")
        return record


@dataclass(frozen=True)
class SaleRecord:
    at: int
    sale: str  # the till's sale id
    kind: str
    accepted: bool
    reason: str
    amount: int | None = None
    currency: str | None = None
    balance_after: int | None = None
    card_id: str | None = None
    token: str | None = None
    receipt: str | None = None
    id: str | None = None

    def to_json(self) -> dict:
        body = {name: getattr(self, name) for name in _SALE_ORDER}
        return body if self.id is None else {"id": self.id, **body}

    @classmethod
    def from_json(cls, row) -> SaleRecord:
        """An upload row as a SaleRecord; RecordError saying why it is not one."""
        common = _common(row, SALE_FIELDS)
        if row.get("sale") is None:
            raise RecordError("missing_field", "sale is required")
        record = cls(**common, sale=text(row["sale"], "sale", WORD, optional=False))
        if record.accepted and record.kind != "purse":
            raise RecordError("invalid_field", "a till sale is paid by a purse tap: only kind purse is accepted")
        if record.accepted and None in (record.card_id, record.receipt, record.amount, record.currency):
            raise RecordError("missing_field", "an accepted purse sale carries card_id, amount, currency and receipt")
        return record

    @property
    def clears(self) -> bool:
        """A paid purse sale: its receipt goes to clearing."""
        return self.accepted and self.kind == "purse"


_SALE_ORDER = tuple(f.name for f in fields(SaleRecord) if f.name != "id")


def is_sale(row) -> bool:
    """A journal or upload row that is a sale (a tap has no "sale")."""
    return isinstance(row, dict) and "sale" in row


def is_legacy_sale(row) -> bool:
    """A tap row that is a till's sale as tills uploaded them before sale records."""
    return isinstance(row, dict) and row.get("route") == LEGACY_TILL_ROUTE


def sale_from_legacy_tap(row: dict) -> dict:
    """The sale row of a tap row on LEGACY_TILL_ROUTE: its stop is the sale id; a till's
    rules version and direction say nothing of a sale."""
    sale = {k: v for k, v in row.items() if k not in ("route", "stop", "rules_version", "direction")}
    sale["sale"] = row.get("stop")
    return sale


# -- one field at a time ------------------------------------------------------------------


def integer(value, name: str, low: int, high: int, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecordError("invalid_field", f"{name} must be an integer from {low} to {high}")
    return value


def text(value, name: str, pattern: re.Pattern, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RecordError("invalid_field", f"{name} is not a valid {name}")
    return value


def _common(row, allowed: frozenset[str]) -> dict:
    """The fields taps and sales share, checked; what is only one record's is the caller's."""
    if not isinstance(row, dict):
        raise RecordError("not_an_object", "a record is a JSON object")
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise RecordError("unknown_field", f"unknown field {unknown[0][:40]!r}")
    for name in REQUIRED:
        if row.get(name) is None:
            raise RecordError("missing_field", f"{name} is required")
    kind = row["kind"]
    if kind not in KINDS:
        raise RecordError("invalid_field", f"kind must be one of {', '.join(KINDS)}")
    accepted = row["accepted"]
    if not isinstance(accepted, bool):
        raise RecordError("invalid_field", "accepted must be true or false")
    token = row.get("token")
    if token is not None and tokens.token_kind(token) is None:
        raise RecordError("invalid_field", "token is not a keyed-hash token (pan_... or uid_...)")
    receipt = row.get("receipt")
    if receipt is not None and not (isinstance(receipt, str) and RECEIPT.fullmatch(receipt)):
        raise RecordError("invalid_field", f"receipt must be {purse.RECEIPT_SIZE} bytes in lower-case hex")
    if accepted and kind in TOKEN_KINDS and token is None:
        raise RecordError("missing_field", "an accepted token tap carries its token")
    if accepted and kind in ("unknown", "error"):
        raise RecordError("invalid_field", f"a tap of kind {kind} cannot be accepted")
    return {"id": text(row["id"], "id", ID, optional=False),
            "at": integer(row["at"], "at", 0, MAX_AT, optional=False),
            "kind": kind, "accepted": accepted,
            "reason": text(row["reason"], "reason", WORD, optional=False),
            "amount": integer(row.get("amount"), "amount", 1, purse.MAX_TRANSACTION_AMOUNT),
            "currency": text(row.get("currency"), "currency", CURRENCY),
            "balance_after": integer(row.get("balance_after"), "balance_after", 0, purse.MAX_BALANCE),
            "card_id": text(row.get("card_id"), "card_id", CARD_ID),
            "token": token, "receipt": receipt}
