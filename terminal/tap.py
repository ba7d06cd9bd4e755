"""The tap: what a validator does with the card in its field, over any CardSession.

Classification costs as few APDUs as possible: SELECT the purse applet; if the card
has none, read EMV (terminal/emv.py) and tokenise the PAN; if it has no EMV
application either, tokenise the UID (from the reader, or FF CA 00 00 00). A purse tap
is SELECT + DEBIT, 2 APDUs, verified offline: the certificate against the issuer keys,
then the card's signature on the receipt.

Tear recovery: a debit whose answer never came is returned as a PendingDebit, which
the caller keeps and passes to the next tap. When that card comes back, its counter
tells what happened: unchanged, the debit never committed and is sent again (same
nonce); moved on, GET RECEIPT for the transaction after the old counter says whether
it was ours (same nonce) and completes the tap with it. A fare is never charged twice.

`tap` never raises: a card answering garbage, nothing, or leaving mid-exchange gives
an outcome of kind "error" with a reason.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from protocol import certs, tokens
from protocol import purse
from protocol.apdu import SW_MEMORY_FAILURE, SW_OK, MalformedAPDU, parse_response
from terminal import emv
from terminal.readers.base import CardRemoved, CardSession, ReaderError

GET_UID = bytes.fromhex("FFCA000000")  # PC/SC pseudo-APDU: the card's UID
MAX_PENDING = 16  # unfinished debits remembered; the oldest is forgotten first


@dataclass(frozen=True)
class TapContext:
    fare: int  # minor units
    currency: str  # ISO 4217 alpha
    terminal_id: bytes  # 8 bytes
    issuer_keys: Mapping[bytes, bytes]  # issuer key id -> issuer public key
    token_key: bytes  # keys the EMV and UID tokens
    now: datetime  # timezone-aware UTC
    deny: frozenset = frozenset()  # refused card ids (bytes or hex) and tokens
    nonce: bytes | None = None  # this tap's 8-byte transaction id; None: drawn at random

    def __post_init__(self):
        # A misconfigured terminal fails when it starts, not at a rider's tap.
        if not (isinstance(self.fare, int) and 1 <= self.fare <= purse.MAX_TRANSACTION_AMOUNT):
            raise ValueError(f"fare must be an integer 1..{purse.MAX_TRANSACTION_AMOUNT} in minor units")
        if self.currency not in purse.CURRENCY_CODES:
            raise ValueError(f"unsupported currency {self.currency!r}")
        if len(self.terminal_id) != purse.ID_SIZE or (self.nonce is not None and len(self.nonce) != purse.NONCE_SIZE):
            raise ValueError("terminal_id and nonce are 8 bytes")
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")


@dataclass(frozen=True)
class PendingDebit:
    """A DEBIT sent whose answer never arrived: the card may or may not have paid."""
    card_id: bytes
    counter_before: int
    nonce: bytes
    amount: int
    currency: str
    time: int  # unix seconds, as sent in the DEBIT

    def to_json(self) -> dict:
        """For the terminal's journal: pending debits must survive a restart of the terminal."""
        return {"card_id": self.card_id.hex(), "counter_before": self.counter_before, "nonce": self.nonce.hex(),
                "amount": self.amount, "currency": self.currency, "time": self.time}

    @classmethod
    def from_json(cls, doc: dict) -> PendingDebit:
        return cls(bytes.fromhex(doc["card_id"]), int(doc["counter_before"]), bytes.fromhex(doc["nonce"]),
                   int(doc["amount"]), str(doc["currency"]), int(doc["time"]))


@dataclass(frozen=True)
class TapOutcome:
    kind: str  # "purse", "emv", "uid", "unknown" or "error"
    accepted: bool
    reason: str  # a short code: paid, recovered, token, insufficient_balance, card_removed, ...
    detail: str = ""  # one line for a person
    card_id: bytes | None = None  # purse cards
    token: str | None = None  # EMV and UID cards
    amount: int | None = None  # debited from a purse
    currency: str | None = None
    balance_after: int | None = None
    receipt: bytes | None = None  # the signed receipt, for the journal and clearing
    apdus: int = 0

    @property
    def signal(self) -> str:
        """What the reader shows: "accept", "deny" or "error"."""
        return "accept" if self.accepted else "error" if self.kind == "error" else "deny"


class _Link:
    """Counts the APDUs of a tap and splits their answers."""

    def __init__(self, session: CardSession):
        self.session = session
        self.count = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        return bytes(self.session.transmit(apdu))

    def exchange(self, apdu: bytes):
        return parse_response(self.transmit(apdu))


def tap(session: CardSession, ctx: TapContext, pending: tuple[PendingDebit, ...] = (), *,
        read_emv: Callable | None = None, uid_token: Callable | None = None, selected: bytes | None = None
        ) -> tuple[TapOutcome, tuple[PendingDebit, ...]]:
    """Read and decide one tap. Returns the outcome and the unfinished debits to keep.

    selected: the card's answer to the purse SELECT when the caller sent it already (the
    validator reads the card id for its repeat check first); it is not sent again.

    read_emv(transmit, token_key) -> object with .token, or None when the card has no
    EMV application (default terminal.emv.read_token); uid_token(key, uid) -> token
    (default protocol.tokens.uid_token).
    """
    link = _Link(session)
    link.count = 0 if selected is None else 1  # the caller's SELECT is one of this tap's exchanges
    pending = tuple(pending)
    try:
        outcome, pending = _tap(link, session, ctx, pending, read_emv, uid_token, selected)
    except CardRemoved:
        outcome = _error("card_removed", "the card left the field")
    except ReaderError as e:
        outcome = _error("reader_error", f"reader: {e}")
    except (MalformedAPDU, purse.PurseError) as e:
        outcome = _error("garbage", f"the card answered garbage: {e}")
    except Exception as e:  # a validator must keep running whatever a card does
        outcome = _error("internal_error", f"{type(e).__name__}: {e}")
    return replace(outcome, apdus=link.count), pending


def _error(reason: str, detail: str, **fields) -> TapOutcome:
    return TapOutcome("error", False, reason, detail, **fields)


def _denied(ctx: TapContext, ident: bytes | str) -> bool:
    return ident in ctx.deny or (isinstance(ident, bytes) and ident.hex() in ctx.deny)


def _tap(link, session, ctx, pending, read_emv, uid_token, answer):
    selected = link.exchange(purse.select_command()) if answer is None else parse_response(answer)
    if selected.sw == SW_OK:
        return _purse(link, ctx, pending, selected.data)
    # No purse (6A82, or a card refusing our SELECT in any other way): EMV, then UID.
    read_emv = read_emv or _default_emv(ctx)
    try:
        found = read_emv(link.transmit, ctx.token_key)
    except (CardRemoved, ReaderError):
        raise
    except emv.EmvError as e:  # its messages never carry card data
        return _error("emv_error", f"EMV reading failed: {e}"), pending
    except Exception as e:  # whatever else a broken card provokes: its text might hold record bytes
        return _error("emv_error", f"EMV reading failed ({type(e).__name__})"), pending
    if found is not None:
        return _token_outcome("emv", ctx, found.token), pending
    return _uid(link, session, ctx, uid_token or tokens.uid_token), pending


def _token_outcome(kind: str, ctx: TapContext, token: str) -> TapOutcome:
    if _denied(ctx, token):
        return TapOutcome(kind, False, "deny_listed", "this card is on the deny list", token=token)
    return TapOutcome(kind, True, "token", "recorded; the fare is charged to the account later", token=token,
                      currency=ctx.currency)


def _uid(link, session, ctx, uid_token) -> TapOutcome:
    uid = session.uid
    if not uid:
        answer = link.exchange(GET_UID)
        if answer.sw == SW_OK and len(answer.data) in (4, 7, 10):  # ISO 14443-3 UID sizes
            uid = answer.data
    if not uid:
        return TapOutcome("unknown", False, "unknown_card", "no purse, no EMV application, no UID")
    uid = bytes(uid)
    if len(uid) == 4 and uid[0] == 0x08:  # ISO 14443-3 random UID: a new one each tap, so no identity
        return TapOutcome("unknown", False, "random_uid", "the card shows a random UID; it cannot be recognised")
    return _token_outcome("uid", ctx, uid_token(ctx.token_key, uid))


def _default_emv(ctx: TapContext):
    return lambda transmit, key: emv.read_token(transmit, key, today=ctx.now.date(), amount=ctx.fare)


# --- the purse ---------------------------------------------------------------------------

def _purse(link, ctx, pending, fci_bytes):
    try:
        fci = purse.parse_fci(fci_bytes)
    except purse.PurseError as e:
        return _error("garbage", f"not a purse FCI: {e}"), pending
    card = {"card_id": fci.card_id, "currency": fci.currency}

    def deny(reason, detail, keep=pending):
        return TapOutcome("purse", False, reason, detail, **card), keep

    now = purse.unix_seconds(ctx.now)
    try:
        cert = certs.verify(certs.parse(fci.certificate), ctx.issuer_keys, now)
    except certs.BadCertificate as e:
        return deny("bad_certificate", str(e))
    if cert.card_id != fci.card_id:
        return deny("bad_certificate", "the certificate names another card")
    if _denied(ctx, fci.card_id):
        return deny("deny_listed", "this card is on the deny list")

    mine = next((x for x in pending if x.card_id == fci.card_id), None)
    others = tuple(x for x in pending if x is not mine)
    if mine is not None:
        if fci.counter < mine.counter_before:  # counters only go up: a restored or cloned card
            return deny("counter_rollback", "the card's counter went backwards")
        if fci.counter > mine.counter_before:
            receipt = _recover(link, cert, mine, ctx.terminal_id)
            if receipt is not None:
                return TapOutcome("purse", True, "recovered", "the torn debit had been paid", amount=receipt.amount,
                                  balance_after=receipt.balance_after, receipt=receipt.to_bytes(), **card), others
            mine = None  # that transaction was not ours: our debit never happened
        pending = others  # from here on, this card's tap is decided afresh (or retried)

    if fci.locked:
        return deny("card_locked", "the purse is locked")
    amount, currency = (mine.amount, mine.currency) if mine else (ctx.fare, ctx.currency)
    if fci.currency != currency:
        return deny("wrong_currency", f"the purse holds {fci.currency}, the fare is in {currency}")
    if fci.balance < amount:
        return deny("insufficient_balance", f"balance {fci.balance} is below the fare {amount}")
    nonce = mine.nonce if mine else (ctx.nonce or os.urandom(purse.NONCE_SIZE))
    attempt = PendingDebit(fci.card_id, fci.counter, nonce, amount, currency, now)
    keep = (attempt,) + pending[:MAX_PENDING - 1]

    try:
        answer = link.exchange(purse.debit_command(amount, currency, ctx.terminal_id, nonce, now))
    except CardRemoved:
        return _error("card_removed", "the card left during the debit: present it again", **card), keep
    except MalformedAPDU as e:
        return _error("garbage", f"the card answered garbage to DEBIT: {e}", **card), keep
    if answer.sw == SW_MEMORY_FAILURE:  # the card cannot tell whether it wrote: ask again next time
        return _error("card_fault", "the card reported a memory failure during the debit", **card), keep
    if answer.sw != SW_OK:
        return deny("card_refused", f"the card refused the debit: {answer.describe()} "
                                    f"({purse.purse_sw_name(answer.sw)})")
    try:
        receipt = purse.check_receipt_signature(purse.parse_receipt(answer.data), cert)
    except purse.PurseError as e:  # it answered, but not with a receipt we can trust: recover next time
        return _error("bad_receipt", f"the debit receipt does not verify: {e}", **card), keep
    if not _is_receipt_of(receipt, attempt, ctx.terminal_id) or receipt.balance_after != fci.balance - amount:
        return _error("bad_receipt", "the receipt does not match the debit", **card), keep
    return TapOutcome("purse", True, "paid", "paid from the purse", amount=amount,
                      balance_after=receipt.balance_after, receipt=answer.data, **card), pending


def _is_receipt_of(receipt: purse.Receipt, attempt: PendingDebit, terminal_id: bytes) -> bool:
    return (receipt.kind == purse.KIND_DEBIT and receipt.card_id == attempt.card_id
            and receipt.counter == attempt.counter_before + 1 and receipt.amount == attempt.amount
            and receipt.currency == attempt.currency and receipt.terminal_id == terminal_id
            and receipt.nonce == attempt.nonce and receipt.time == attempt.time)


def _recover(link, cert, mine: PendingDebit, terminal_id: bytes) -> purse.Receipt | None:
    """The receipt of the torn debit if the card committed it; None if it did not.
    Raises (and so keeps the pending debit) when the card's answer cannot tell."""
    answer = link.exchange(purse.get_receipt_command(mine.counter_before + 1))
    if answer.sw == purse.SW_NO_RECEIPT:
        # Out of the card's log: RECEIPT_LOG_SIZE transactions since; this is a new tap.
        return None
    if answer.sw != SW_OK:
        raise purse.PurseError(f"GET RECEIPT answered {answer.describe()}")
    receipt = purse.check_receipt_signature(purse.parse_receipt(answer.data), cert)
    return receipt if _is_receipt_of(receipt, mine, terminal_id) else None
