"""The card decision: what a desk (the bus validator, the till) makes of a card or a QR ticket.

Plain functions over plain values, and the card exchange itself through terminal.tap;
nothing here touches the journal, a panel, a clock or the network. `Terms` is what a desk
decides with at one moment; a decision comes back as an `Intent`: what must be journalled,
durably, before the rider or the cashier is told (the decision, and the unfinished purse
debits to keep with it). The desk's shell journals it (terminal/writeahead.py), then
signals and shows.

    present(session, terms)     SELECT the purse applet, then after_select(answer, terms): an
                                Intent when that decides the tap (no place, journal down, card
                                gone, a repeat, a tap-off, no fare); else `Read`: how the tap
                                goes on, with `ahead`, the pending debits to journal before
                                the DEBIT goes out
    read(session, step, terms)  the rest of the tap (terminal.tap: purse debit verified
                                offline, tear recovery, EMV or UID token, deny-list), decided
    qr(text, ...)               a signed QR ticket shown to a bus validator
    unjournalled(intent, err)   what is shown, and kept pending, when the journal refused it

The rules: a card or token accepted within the repeat window is refused. For a purse that
is checked on the card id read at SELECT, before any DEBIT, so a rider who holds the card
to the reader twice pays once; a token (EMV, UID) moves no money at the tap, so it is
refused after reading. An exit validator debits no purse (it paid at tap-on). A purse is
never debited without a fare. A debit that happened is always accepted, so money and
display agree.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from protocol import purse
from protocol.apdu import MalformedAPDU, parse_response
from protocol.uplink import TapRecord
from terminal.readers.base import CardRemoved, ReaderError
from terminal.tap import MAX_PENDING, PendingDebit, TapContext, tap

REPEAT_WINDOW = timedelta(seconds=60)  # a second accepted tap of one card within this is refused
RECENT_LIMIT = 4096  # identities remembered for the repeat check; the oldest go first
TAP_OFF, TAP_OFF_MESSAGE = "tap_off", "Goodbye"

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
    """What a desk decided for one tap: journalled, then shown, then uploaded."""
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


Recent = Mapping[str, datetime]  # identity -> time of its last accepted tap


@dataclass(frozen=True)
class Terms:
    """What a desk decides the card in its field with, at one moment."""
    now: datetime
    place: Place | None
    fare: int | None  # minor units; None: no fare here
    currency: str
    rules_version: int | None
    terminal_id: bytes
    token_key: bytes
    issuer_keys: Mapping[bytes, bytes]
    deny: frozenset = frozenset()
    pending: tuple[PendingDebit, ...] = ()  # the unfinished debits the journal holds
    recent: Recent = field(default_factory=dict)
    window: timedelta = REPEAT_WINDOW
    direction: str = "on"
    journal_down: str | None = None  # why the journal cannot take a tap now; None: it can


@dataclass(frozen=True)
class Intent:
    """What must be journalled, durably, before anyone is told: the decision (as `entry`, a
    record of protocol.uplink, when the desk keeps it in another form: a till's sale) and the
    unfinished purse debits to keep with it, replacing the journal's."""
    decision: Decision
    pending: tuple[PendingDebit, ...]
    entry: object = None

    @property
    def row(self):
        """What the journal writes."""
        return self.decision if self.entry is None else self.entry


@dataclass(frozen=True)
class Read:
    """The tap goes on in terminal.tap: a purse to debit, or a card without one."""
    selected: bytes  # the card's answer to SELECT, not sent again
    context: TapContext
    ahead: tuple[PendingDebit, ...] | None = None  # journal these before the DEBIT goes out (None: nothing)


# --- a card ------------------------------------------------------------------------------

def present(session, terms: Terms) -> Intent | Read:
    """The card in the field, as far as its answer to SELECT decides it."""
    if terms.place is None:
        return _told(terms, refusal("no_place", now=terms.now, place=None))
    if terms.journal_down is not None:
        return _told(terms, refusal("journal_unavailable", now=terms.now, place=terms.place,
                                    detail=f"the journal cannot be written: {terms.journal_down}"))
    try:
        answer = bytes(session.transmit(purse.select_command()))
    except CardRemoved:
        return _told(terms, refusal("card_removed", now=terms.now, place=terms.place))
    except ReaderError as e:
        return _told(terms, refusal("reader_error", now=terms.now, place=terms.place, detail=str(e)))
    return after_select(answer, terms)


def after_select(answer: bytes, terms: Terms, nonce: bytes | None = None) -> Intent | Read:
    """After SELECT: the purse's repeat check, tap-off and fare, before any DEBIT. A purse
    about to be debited for the first time brings its debit to journal ahead, so that a desk
    dying between the card's answer and the journal write finds the receipt again (GET
    RECEIPT) when the card comes back, instead of leaving a gap in the card's counters."""
    fci, now, place, ahead = purse_fci(answer), terms.now, terms.place, None
    if fci is not None:
        card_id = fci.card_id.hex()
        if already_tapped(terms.recent, card_id, now, terms.window):
            return _told(terms, repeat_refusal(card_id, "purse", now, place, terms.rules_version))
        if terms.direction == "off":
            return _told(terms, tap_off(fci, now=now, place=place, rules_version=terms.rules_version))
        if not terms.fare:  # no fare here: never debit a purse with a guess
            return _told(terms, refusal("no_fare", now=now, place=place, kind="purse", card_id=card_id))
        if not any(d.card_id == fci.card_id for d in terms.pending):
            nonce = nonce or os.urandom(purse.NONCE_SIZE)
            debit = PendingDebit(fci.card_id, fci.counter, nonce, terms.fare, terms.currency,
                                 purse.unix_seconds(now))
            ahead = (debit,) + terms.pending[:MAX_PENDING - 1]
    # Without a fare only token cards get this far; EMV reading wants some amount for its GPO.
    context = TapContext(terms.fare or 1, terms.currency, terms.terminal_id, terms.issuer_keys, terms.token_key,
                         now, deny=terms.deny, nonce=nonce if ahead else None)
    return Read(answer, context, ahead)


def read(session, step: Read, terms: Terms) -> Intent:
    """The rest of the tap, once what `step` asks to journal ahead is journalled."""
    outcome, pending = tap(session, step.context, terms.pending, selected=step.selected)
    return Intent(decide(outcome, now=terms.now, place=terms.place, rules_version=terms.rules_version,
                         recent=terms.recent, window=terms.window), pending)


def refused_ahead(step: Read, terms: Terms, error: Exception) -> Intent:
    """The debit could not be journalled ahead: refused before the DEBIT, nothing was debited."""
    return _told(terms, refusal("journal_unavailable", now=terms.now, place=terms.place,
                                card_id=step.ahead[0].card_id.hex(), detail=f"the journal cannot be written: {error}"))


def unjournalled(intent: Intent, error: Exception) -> Intent:
    """What a tap the journal could not take comes to: refused, out of service, shown; a purse
    that paid keeps its debit pending, so its next tap recovers it (GET RECEIPT) instead of
    charging it again."""
    d = intent.decision
    shown = replace(refusal("journal_unavailable", now=d.at, place=Place(d.route, d.stop) if d.route else None,
                            card_id=d.card_id, detail=f"not journalled ({error}): {d.reason}"),
                    direction=d.direction)
    pending, debit = intent.pending, paid_debit(d)
    if debit is not None and not any(x.card_id == debit.card_id for x in pending):
        pending = ((debit,) + pending)[:MAX_PENDING]
    return Intent(shown, pending)


def paid_debit(decision: Decision) -> PendingDebit | None:
    """The debit behind an accepted purse decision, as a pending debit."""
    if not (decision.accepted and decision.kind == "purse" and decision.receipt):
        return None
    r = purse.parse_receipt(bytes.fromhex(decision.receipt))
    return PendingDebit(r.card_id, r.counter - 1, r.nonce, r.amount, r.currency, r.time)


def purse_fci(answer: bytes) -> purse.Fci | None:
    """The purse's FCI in an answer to SELECT; None for a card without the purse applet."""
    try:
        response = parse_response(answer)
        return purse.parse_fci(response.data) if response.sw == 0x9000 else None
    except (MalformedAPDU, purse.PurseError, ValueError):
        return None


def tap_off(fci: purse.Fci, *, now: datetime, place: Place, rules_version: int | None) -> Decision:
    """A purse card at an exit validator: recorded, never debited (it paid at tap-on)."""
    return Decision(now, "purse", True, TAP_OFF, TAP_OFF_MESSAGE, place.route, place.stop, rules_version,
                    currency=fci.currency, balance_after=fci.balance, card_id=fci.card_id.hex(),
                    detail="tap-off: the fare was paid at tap-on", direction="off")


def _told(terms: Terms, decision: Decision) -> Intent:
    """A decision taken without touching the purse: the pending debits stay as they are."""
    return Intent(decision, terms.pending)


# --- a QR ticket -------------------------------------------------------------------------

def qr(text: str, *, now: datetime, place: Place | None, issuer_keys: Mapping[bytes, bytes], deny: frozenset,
       seen: dict) -> tuple[Decision, dict]:
    """A QR ticket shown to a bus validator, and the replay memory after it."""
    from protocol import signed_qr

    try:
        code = signed_qr.verify(text, issuer_keys, now)
        if not isinstance(code, signed_qr.Ticket):
            raise signed_qr.SignedQrError("a pay code is for a till, not a bus")
        if code.route and place and code.route != place.route:
            raise signed_qr.SignedQrError(f"the ticket is for route {code.route}")
        if code.card_id.hex() in deny:
            return refusal("deny_listed", now=now, place=place, kind="qr", card_id=code.card_id.hex()), seen
        seen = signed_qr.refuse_replay(code, seen, now)
    except signed_qr.Replayed as e:
        return refusal("qr_replayed", now=now, place=place, kind="qr", detail=str(e)), seen
    except signed_qr.SignedQrError as e:
        return refusal("bad_qr", now=now, place=place, kind="qr", detail=str(e)), seen
    return Decision(now, "qr", True, "qr_ticket", MESSAGES["qr_ticket"], place.route if place else None,
                    place.stop if place else None, card_id=code.card_id.hex(),
                    detail=f"ticket {code.ticket_id.hex()}"), seen


# --- repeat taps -------------------------------------------------------------------------

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


# --- the decision of a tap ---------------------------------------------------------------

def decide(outcome, *, now: datetime, place: Place | None, rules_version: int | None,
           recent: Recent, window: timedelta = REPEAT_WINDOW) -> Decision:
    """The decision for a terminal.tap.TapOutcome: a token tap accepted within the window of
    the same token's last one is refused as already tapped; a debit that happened is accepted."""
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
    """A decision taken without a debit: no place set, no fare, a bad QR code."""
    return Decision(now, kind, False, reason, _message(reason, False),
                    place.route if place else None, place.stop if place else None,
                    card_id=card_id, detail=detail)


def _message(reason: str, accepted: bool) -> str:
    return MESSAGES.get(reason) or ("Accepted" if accepted else "Refused")
