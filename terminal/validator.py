"""The bus validator's decisions, as plain functions over plain values.

A tap is read by terminal.tap.tap (the card, the purse debit, offline verification);
this module decides what the validator makes of it and what goes into the journal:

- `already_tapped` refuses a card or token seen accepted within the repeat window.
  For a purse it runs on the card id read at SELECT, before any DEBIT, so a rider
  who holds the card to the reader twice pays once.
- `decide` turns a TapOutcome into a `Decision`: accepted or refused, the reason,
  the fare and rules version, the place (route and stop) and the receipt.
- `place_at` picks the route and stop from a stop feed (stop changes with times).

Nothing here reads a clock, a file or a reader: `now` and every input are passed in.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.uplink import TapRecord

REPEAT_WINDOW = timedelta(seconds=60)  # a second accepted tap of one card within this is refused
RECENT_LIMIT = 4096  # identities remembered for the repeat check; the oldest go first

MESSAGES = {
    "paid": "Paid",
    "recovered": "Paid (completed the interrupted tap)",
    "token": "Recorded: fare charged to the account",
    "qr_ticket": "Ticket valid",
    "already_tapped": "Already tapped",
    "deny_listed": "Card blocked",
    "insufficient_balance": "Balance too low",
    "card_locked": "Card locked",
    "wrong_currency": "Card not valid here",
    "bad_certificate": "Card not recognised",
    "counter_rollback": "Card not valid",
    "card_refused": "Card refused the payment",
    "no_fare": "No fare for this stop",
    "no_place": "Validator has no route/stop set",
    "random_uid": "Card not recognised",
    "unknown_card": "Card not recognised",
    "card_removed": "Hold the card still and tap again",
    "card_fault": "Tap again",
    "bad_receipt": "Tap again",
    "garbage": "Card not readable",
    "reader_error": "Reader problem",
    "emv_error": "Card not readable",
    "internal_error": "Validator problem",
    "journal_unavailable": "Out of service: tap not taken",
    "bad_qr": "QR code not valid",
    "qr_replayed": "QR code already used",
}


@dataclass(frozen=True)
class Place:
    route: str
    stop: str


@dataclass(frozen=True)
class Decision:
    """What the validator decided for one tap: journalled, then shown, then uploaded."""
    at: datetime
    kind: str  # purse, emv, uid, qr, unknown, error
    accepted: bool
    reason: str
    message: str  # what the rider reads
    route: str | None
    stop: str | None
    rules_version: int | None = None
    amount: int | None = None  # debited from a purse, minor units
    currency: str | None = None
    balance_after: int | None = None
    card_id: str | None = None  # hex; purse cards and QR tickets
    token: str | None = None  # EMV and UID keyed-hash tokens (never a card number)
    receipt: str | None = None  # hex of the purse's signed receipt
    detail: str = ""
    direction: str = "on"  # off: taken at an exit validator (a tap-off)

    @property
    def signal(self) -> str:
        """For reader.signal: accept, deny or error."""
        if self.accepted:
            return "accept"
        return "error" if self.kind == "error" else "deny"

    @property
    def identity(self) -> str | None:
        return self.card_id or self.token

    def record(self) -> TapRecord:
        """The tap as the journal keeps it and the gateway takes it (the tap id is the journal's)."""
        return TapRecord(int(self.at.timestamp()), self.kind, self.accepted, self.reason, self.route, self.stop,
                         self.rules_version, self.amount, self.currency, self.balance_after, self.card_id,
                         self.token, self.receipt, self.direction)

    def to_json(self) -> dict:
        return self.record().to_json()


# --- repeat taps ----------------------------------------------------------------------

Recent = Mapping[str, datetime]  # identity -> time of its last accepted tap


def already_tapped(recent: Recent, identity: str | None, now: datetime,
                   window: timedelta = REPEAT_WINDOW) -> bool:
    """True when identity was accepted less than `window` before now."""
    if identity is None:
        return False
    last = recent.get(identity)
    return last is not None and timedelta(0) <= now - last < window


def remember(recent: Recent, decision: Decision, window: timedelta = REPEAT_WINDOW) -> dict[str, datetime]:
    """The repeat-check memory after decision: accepted taps are remembered, stale ones dropped."""
    kept = {k: t for k, t in recent.items() if decision.at - t < window}
    if decision.accepted and decision.identity is not None:
        kept.pop(decision.identity, None)
        kept[decision.identity] = decision.at
    while len(kept) > RECENT_LIMIT:
        kept.pop(next(iter(kept)))
    return kept


def repeat_refusal(identity: str, kind: str, now: datetime, place: Place | None,
                   rules_version: int | None = None) -> Decision:
    """The decision for a card seen again within the window (no APDU beyond SELECT was sent)."""
    is_token = kind in ("emv", "uid")
    return Decision(now, kind, False, "already_tapped", MESSAGES["already_tapped"],
                    place.route if place else None, place.stop if place else None, rules_version,
                    card_id=None if is_token else identity, token=identity if is_token else None,
                    detail="this card was accepted a moment ago")


# --- the decision ---------------------------------------------------------------------

def decide(outcome, *, now: datetime, place: Place | None, rules_version: int | None,
           recent: Recent, window: timedelta = REPEAT_WINDOW) -> Decision:
    """The validator's decision for a terminal.tap.TapOutcome.

    A token (EMV, UID) tap accepted within the window of the same token's last one is
    refused as already tapped (a token tap moves no money at the tap, so refusing after
    reading costs nothing). A purse was checked before its debit (already_tapped);
    a debit that happened is always accepted, whatever else, so money and display agree.
    """
    card_id = outcome.card_id.hex() if outcome.card_id else None
    route, stop = (place.route, place.stop) if place else (None, None)
    if outcome.accepted and outcome.kind in ("emv", "uid") and already_tapped(recent, outcome.token, now, window):
        return repeat_refusal(outcome.token, outcome.kind, now, place, rules_version)
    paid = outcome.kind == "purse" and outcome.accepted
    return Decision(
        now, outcome.kind, outcome.accepted, outcome.reason,
        _message(outcome.reason, outcome.accepted), route, stop,
        rules_version if outcome.kind in ("purse", "emv", "uid") else None,
        amount=outcome.amount if paid else None,
        currency=outcome.currency if (paid or outcome.kind in ("emv", "uid")) else None,
        balance_after=outcome.balance_after, card_id=card_id, token=outcome.token,
        receipt=outcome.receipt.hex() if outcome.receipt else None, detail=outcome.detail)


def refusal(reason: str, *, now: datetime, place: Place | None, kind: str = "error",
            detail: str = "", card_id: str | None = None) -> Decision:
    """A decision the validator takes without a debit: no place set, no fare, a bad QR code."""
    return Decision(now, kind, False, reason, _message(reason, False),
                    place.route if place else None, place.stop if place else None,
                    card_id=card_id, detail=detail)


def _message(reason: str, accepted: bool) -> str:
    return MESSAGES.get(reason) or ("Accepted" if accepted else "Refused")


# --- the stop feed --------------------------------------------------------------------

@dataclass(frozen=True)
class StopChange:
    at: datetime
    place: Place


def place_at(feed: Sequence[StopChange], now: datetime) -> Place | None:
    """The place of the last change at or before now (None if the feed starts later)."""
    current = None
    for change in sorted(feed, key=lambda c: c.at):
        if change.at > now:
            break
        current = change.place
    return current


def parse_command(line: str, place: Place | None) -> Place | None:
    """A stdin command: "stop S", "route R" or "route R stop S". ValueError when it is not one."""
    words = line.split()
    route = place.route if place else None
    stop = place.stop if place else None
    if not words or len(words) % 2:
        raise ValueError(f"not a command: {line.strip()!r} (use: stop S | route R | route R stop S)")
    for key, value in zip(words[::2], words[1::2]):
        if key == "route":
            route = value
        elif key == "stop":
            stop = value
        else:
            raise ValueError(f"unknown command word {key!r} (use: stop S | route R | route R stop S)")
    if route is None or stop is None:
        raise ValueError("set both a route and a stop")
    return Place(route, stop)
