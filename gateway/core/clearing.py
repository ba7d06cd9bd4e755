"""Purse clearing: value onto cards (loads) and card-signed debit receipts into the ledger.

The books. Each purse card has a purse_float account. A load moves money from the
wallet's account to the card's float *before* the card is told (the issuer's signed
TOP-UP authorisation is the answer), so the float always backs what the card carries.
Cleared debits are settled per upload, as a clearing house settles a batch: the
receipts one upload clears are summed per (card, operator revenue account) into one
leg, purse float -> revenue, and all the legs of the upload are posted together in one
ledger.transfer_linked call (all or none). A leg's id is "purse:<card id>:<first
counter it covers>": a counter posts once, so a leg can never be posted twice, and a
retried upload (its taps are duplicates) clears nothing and posts nothing. Each
receipt's row in purse_receipts names the leg that carried it (transfer_id); the legs
of one upload share its settlement id in their metadata.

The chain. A card numbers its transactions (debits and top-ups alike). The gateway
clears a card's transactions in counter order: a debit receipt is posted only when
every counter before it is accounted for (a debit cleared, or a load authorised at
that counter) and its balance_after equals the cleared balance minus the amount.
So:
- a receipt whose certificate or card signature does not verify: refused (forged);
- the same receipt again: a replay, refused, nothing moves;
- another receipt for a counter already seen: a double spend (a cloned card key), refused;
- a receipt after a gap: held until the missing counters arrive (taps of one card come
  from many validators that upload at different times), then posted in order;
- a balance that does not follow: the card minted value; clearing stops for the card
  (purse_cards.problem) and an operator looks at it.
A load authorised at a counter that a debit then used never reached the card (the card
refuses a stale authorisation): it is superseded and its money goes back to the wallet.

Plain functions over a Tx; `now` and the issuer seed are passed in.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from gateway.core import iso, issuer, ledger, new_id, unix
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.store import issuer as issuer_db
from gateway.store import taps as taps_db
from gateway.store import wallets as wallets_db
from protocol import certs, ed25519, purse

TRANSFER_CODE = "purse_fare"
LOAD_CODE = "purse_load"
REFUND_CODE = "purse_load_refund"
log = logging.getLogger("tapstack.gateway")


def float_account_id(card_id: str) -> str:
    return f"purse:{card_id}"


def revenue_account_id(merchant_id: str, currency: str) -> str:
    return f"revenue:{merchant_id}:{currency}"


def transfer_id(card_id: str, counter: int) -> str:
    return f"purse:{card_id}:{counter}"


# --- verification (pure) ----------------------------------------------------------------

class _Verified:
    """The LRU behind CertificateCache: (certificate hex, issuer key set) -> Certificate."""

    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict[tuple, certs.Certificate] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> certs.Certificate | None:
        with self.lock:
            cert = self.entries.get(key)
            if cert is not None:
                self.entries.move_to_end(key)
            return cert

    def put(self, key: tuple, cert: certs.Certificate) -> None:
        with self.lock:
            self.entries[key] = cert
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)


class CertificateCache:
    """Issuer certificates verified once, not once per receipt: a bounded LRU keyed by the
    certificate bytes and the issuer key set, shared across uploads (`VERIFIED`), so a
    receipt costs one Ed25519 verification. A changed key set (a key added or retired)
    misses the cache and verifies again. The expiry is checked against each tap's time."""

    def __init__(self, issuer_keys: dict[bytes, bytes], size: int = 4096, *, verified: _Verified | None = None):
        self.issuer_keys = issuer_keys
        self._keys = frozenset(issuer_keys.items())
        self._verified = verified or _Verified(size)

    def using(self, issuer_keys: dict[bytes, bytes]) -> "CertificateCache":
        """A cache for `issuer_keys` sharing this one's entries (those of other key sets stay, unused)."""
        return CertificateCache(issuer_keys, verified=self._verified)

    def certificate(self, card_id: str, certificate_hex: str | None, at: int) -> certs.Certificate:
        """The card's verified certificate at time `at`; BadCertificate otherwise."""
        if certificate_hex is None:
            raise certs.BadCertificate("no certificate issued for this card id")
        key = (certificate_hex, self._keys)
        cert = self._verified.get(key)
        if cert is None:
            cert = certs.parse(bytes.fromhex(certificate_hex))
            certs.verify(cert, self.issuer_keys, cert.not_after)  # signature and issuer key
            self._verified.put(key, cert)
        if cert.card_id.hex() != card_id:
            raise certs.BadCertificate("the certificate names another card")
        if at > cert.not_after:
            raise certs.BadCertificate("certificate expired before the tap")
        return cert


# One per process: under gunicorn each worker keeps its own.
VERIFIED = CertificateCache({})


def check_receipt(receipt_hex: str, *, card_id: str, amount: int, currency: str,
                  certificate_hex: str | None, cache: CertificateCache) -> tuple[purse.Receipt | None, str | None]:
    """(the verified debit Receipt, None) or (None, the reason it is refused)."""
    try:
        raw = bytes.fromhex(receipt_hex)
        receipt = purse.parse_receipt(raw)
    except (ValueError, purse.PurseError):
        return None, "malformed_receipt"
    if receipt.kind != purse.KIND_DEBIT or receipt.card_id.hex() != card_id:
        return None, "receipt_mismatch"
    if receipt.amount != amount or receipt.currency != currency:
        return None, "receipt_mismatch"
    try:
        cert = cache.certificate(card_id, certificate_hex, receipt.time)
    except certs.BadCertificate:
        return None, "bad_certificate" if certificate_hex else "unknown_card"
    # The signature is over the bytes received (parse_receipt's layout is fixed, so they are
    # exactly the receipt's body): no re-encoding per tap.
    signed = purse.RECEIPT_DOMAIN + raw[:purse.RECEIPT_BODY_SIZE]
    if not ed25519.verify(cert.card_public_key, signed, receipt.signature):
        return None, "forged_receipt"
    return receipt, None


# --- cards and accounts ------------------------------------------------------------------

def hold_cards(tx, cards: dict[str, str], *, now: datetime) -> dict[str, dict]:
    """The clearing state of each card (card id -> the currency a card met for the first time
    is opened in, with its float account), held until commit: no other writer, on any node,
    clears or loads these cards meanwhile. Cards are taken in card id order, so two uploads
    holding some of the same cards never wait for each other in a circle."""
    held = {card_id: dict(row) for card_id, row in taps_db.lock_cards(tx, list(cards)).items()}
    new = [{"card_id": card_id, "currency": currency, "float_account_id": float_account_id(card_id),
            "cleared_counter": 0, "cleared_balance": 0, "problem": None, "created_at": unix(now)}
           for card_id, currency in sorted(cards.items()) if card_id not in held]
    if new:
        for card_id in sorted(taps_db.add_cards(tx, new)):
            ledger.open_account(tx, kind="purse_float", currency=cards[card_id], owner_id=card_id,
                                account_id=float_account_id(card_id), now=now)
        # those this call made, and those another writer made meanwhile (waited for)
        made = taps_db.lock_cards(tx, [r["card_id"] for r in new])
        held.update((card_id, dict(row)) for card_id, row in made.items())
    return held


def ensure_card(tx, card_id: str, currency: str, *, now: datetime) -> dict:
    """The card's clearing state, made if it has none, held until commit (see hold_cards)."""
    return hold_cards(tx, {card_id: currency}, now=now)[card_id]


def open_revenue_account(tx, merchant_id: str, currency: str, *, now: datetime) -> str:
    """The id of the operator's revenue account in currency, opened if it is not there."""
    account_id = revenue_account_id(merchant_id, currency)
    if ledger.get_account(tx, account_id) is None:
        ledger.open_account(tx, kind="operator_revenue", currency=currency, owner_id=merchant_id,
                            account_id=account_id, now=now)
    return account_id


@dataclass
class Leg:
    """The receipts of one card one upload cleared into one operator's revenue: one transfer."""
    card_id: str
    float_account_id: str
    revenue_account_id: str
    currency: str
    first_counter: int
    last_counter: int
    amount: int = 0
    receipts: int = 0

    @property
    def transfer_id(self) -> str:
        return transfer_id(self.card_id, self.first_counter)


class Settlement:
    """The money of one upload's cleared receipts, summed per (card, revenue account), to be
    posted as linked legs in one ledger call (`post`). Pure until `post`."""

    def __init__(self, settlement_id: str | None = None):
        self.id = settlement_id
        self.legs: dict[tuple[str, str], Leg] = {}

    def leg_id(self, card_id: str, revenue_account: str, counter: int) -> str:
        """The id of the transfer that will carry the card's receipt at `counter`."""
        leg = self.legs.get((card_id, revenue_account))
        return leg.transfer_id if leg else transfer_id(card_id, counter)

    def add(self, card: dict, revenue_account: str, counter: int, amount: int, currency: str) -> str:
        """Count one receipt into its card's leg; the id of the transfer that will carry it."""
        key = (card["card_id"], revenue_account)
        leg = self.legs.get(key)
        if leg is None:
            leg = self.legs[key] = Leg(card["card_id"], card["float_account_id"], revenue_account, currency,
                                       counter, counter)
        leg.amount += amount
        leg.receipts += 1
        leg.last_counter = max(leg.last_counter, counter)
        return leg.transfer_id

    def transfers(self) -> list[dict]:
        """The legs as ledger.transfer_linked wants them, in the order they were opened."""
        return [{"transfer_id": leg.transfer_id, "debit_account_id": leg.float_account_id,
                 "credit_account_id": leg.revenue_account_id, "amount": leg.amount, "currency": leg.currency,
                 "code": TRANSFER_CODE,
                 "metadata": {"settlement": self.id, "receipts": leg.receipts, "last_counter": leg.last_counter}}
                for leg in self.legs.values()]

    def post(self, tx, now: datetime) -> None:
        """Post every leg or none; a refused leg raises CardRefused naming its card."""
        if not self.legs:
            return
        try:
            ledger.transfer_linked(tx, self.transfers(), now=now)
        except ledger.LedgerError as e:
            legs = list(self.legs.values())
            index = _leg_index(e.param)
            raise CardRefused(legs[index].card_id if index is not None and index < len(legs) else None, e) from e
        self.legs.clear()


def _leg_index(param: str | None) -> int | None:
    """N of a transfer_linked error's param "legs[N]..."."""
    if param and param.startswith("legs[") and "]" in param:
        number = param[5:param.index("]")]
        return int(number) if number.isdigit() else None
    return None


class CardRefused(Exception):
    """The ledger refused a card's clearing (card_id None: not one card's fault)."""

    def __init__(self, card_id: str | None, error: ledger.LedgerError):
        super().__init__(f"card {card_id}: {error}")
        self.card_id, self.error = card_id, error


def settlement_id(terminal_id: str, tap_ids) -> str:
    """An upload's settlement id: a digest of the terminal and its new tap ids (each tap id
    is new once, so two uploads never share one)."""
    digest = hashlib.sha256("\n".join([terminal_id, *sorted(tap_ids)]).encode()).hexdigest()
    return f"ps_{digest[:24]}"


class Batch:
    """What clearing reads once per upload instead of once per receipt: the cards' cleared
    state (held until commit, see hold_cards; so what is read here stays true), their held
    receipts, the counters of their authorised loads, the operators' revenue accounts; and
    the upload's Settlement. `finish` posts the settlement and writes the cards' cleared
    state back, in the same transaction. `cards`: card id -> its receipts' currency."""

    def __init__(self, tx, cards: dict[str, str], *, now: datetime, settlement: Settlement | None = None):
        self.now = now
        self.settlement = settlement or Settlement()
        self.cards: dict[str, dict] = hold_cards(tx, cards, now=now)
        ids = sorted(self.cards)
        self.held: dict[str, set[int]] = {}
        for r in taps_db.held_receipts(tx, ids):
            self.held.setdefault(r["card_id"], set()).add(r["counter"])
        self.loads: dict[str, set[int]] = {}  # card id -> counters of its authorised loads
        for r in taps_db.authorised_loads(tx, ids):
            self.loads.setdefault(r["card_id"], set()).add(r["counter"])
        self.revenue: dict[tuple[str, str], str] = {}
        self.dirty: set[str] = set()
        self.changed: list[tuple[str, str, str]] = []  # (terminal id, tap id, status) advance() set, in order

    def card(self, tx, card_id: str, currency: str) -> dict:
        if card_id not in self.cards:
            self.cards[card_id] = ensure_card(tx, card_id, currency, now=self.now)
        return self.cards[card_id]

    def revenue_account(self, tx, merchant_id: str, currency: str) -> str:
        key = (merchant_id, currency)
        if key not in self.revenue:
            self.revenue[key] = open_revenue_account(tx, merchant_id, currency, now=self.now)
        return self.revenue[key]

    def finish(self, tx) -> None:
        self.settlement.post(tx, self.now)
        if self.dirty:
            taps_db.save_cards(tx, [self.cards[card_id] for card_id in sorted(self.dirty)])
        self.dirty.clear()


# --- debits ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Submitted:
    """A verified debit receipt as an upload brings it to clearing."""
    receipt: purse.Receipt
    raw_hex: str
    terminal_id: str
    tap_id: str
    merchant_id: str


def clear_upload(tx, submitted: list[Submitted], *, now: datetime,
                 settlement: str | None = None) -> dict[tuple[str, str], str]:
    """Clear an upload's verified receipts, in order, and settle them in one ledger call.

    Returns the clearing status of each (terminal id, tap id) submitted. A ledger refusal
    (a float short of money: a bug in the books, never the rider's) fails that card's
    receipts of this upload, answered "ledger_error:<code>" and not kept, never the
    whole upload: the upload is cleared again without that card (a batch that always
    failed would stop the validator's uploads for good)."""
    refused: dict[str, str] = {}
    while True:
        try:
            with tx.savepoint():
                return _clear_all(tx, submitted, now=now, settlement=settlement, refused=refused)
        except CardRefused as e:
            failed = [e.card_id] if e.card_id else sorted({s.receipt.card_id.hex() for s in submitted} - set(refused))
            log.error("clearing refused the receipts of card(s) %s: %s", ", ".join(failed), e.error)
            for card_id in failed:
                refused[card_id] = f"ledger_error:{e.error.code}"


def _clear_all(tx, submitted, *, now, settlement, refused) -> dict[tuple[str, str], str]:
    cards = [s.receipt.card_id.hex() for s in submitted]
    currencies: dict[str, str] = {}
    for s, card_id in zip(submitted, cards):
        if card_id not in refused:
            currencies.setdefault(card_id, s.receipt.currency)
    batch = Batch(tx, currencies, now=now, settlement=Settlement(settlement))
    status: dict[tuple[str, str], str] = {}
    for s, card_id in zip(submitted, cards):
        key = (s.terminal_id, s.tap_id)
        if card_id in refused:
            status[key] = refused[card_id]
            continue
        try:
            status[key] = submit_debit(tx, s.receipt, terminal_id=s.terminal_id, tap_id=s.tap_id,
                                       merchant_id=s.merchant_id, now=now, batch=batch, raw_hex=s.raw_hex)
        except ledger.LedgerError as e:  # a superseded load's refund refused
            raise CardRefused(card_id, e) from e
    # A later receipt of the upload may have posted (or stopped at) an earlier held one.
    for terminal_id, tap_id, changed in batch.changed:
        if (terminal_id, tap_id) in status:
            status[(terminal_id, tap_id)] = changed
    batch.finish(tx)
    return status


def submit_debit(tx, receipt: purse.Receipt, *, terminal_id: str, tap_id: str, merchant_id: str,
                 now: datetime, batch: Batch | None = None, raw_hex: str | None = None) -> str:
    """Take a verified debit receipt into clearing; its status: posted, held, or a refusal
    (replayed_receipt, double_spend, stale_counter, balance_mismatch, card_problem).
    "posted" means counted into the batch's settlement, which `Batch.finish` posts.
    Without a `batch`, one is made for this receipt and finished here. `raw_hex`: the
    receipt as received, when the caller has it (saves encoding it again)."""
    own = batch is None
    card_id = receipt.card_id.hex()
    batch = batch or Batch(tx, {card_id: receipt.currency}, now=now)
    card = batch.card(tx, card_id, receipt.currency)
    raw = raw_hex or receipt.to_bytes().hex()
    row = {"card_id": card_id, "counter": receipt.counter, "amount": receipt.amount, "currency": receipt.currency,
           "balance_after": receipt.balance_after, "receipt": raw, "terminal_id": terminal_id, "tap_id": tap_id,
           "merchant_id": merchant_id, "status": "held", "transfer_id": None, "created_at": unix(now)}
    # The common case: the next counter of a card in good standing with no load waiting at
    # its cleared counter, whose balance follows: posted at once (no advance()).
    fast = (receipt.counter == card["cleared_counter"] + 1 and not card["problem"]
            and card["cleared_counter"] not in batch.loads.get(card_id, ())
            and receipt.balance_after == card["cleared_balance"] - receipt.amount)
    if fast:
        revenue = batch.revenue_account(tx, merchant_id, receipt.currency)
        row.update(status="posted", transfer_id=batch.settlement.leg_id(card_id, revenue, receipt.counter))
    fresh = receipt.counter > card["cleared_counter"] and taps_db.insert_receipt(tx, row)
    if not fresh:
        seen = taps_db.receipt(tx, card_id=card_id, counter=receipt.counter)
        if seen is None:
            return "stale_counter"  # that counter was a top-up the card took, not this debit
        return "replayed_receipt" if seen["receipt"] == raw else "double_spend"
    if fast:
        batch.settlement.add(card, revenue, receipt.counter, receipt.amount, receipt.currency)
        card["cleared_counter"], card["cleared_balance"] = receipt.counter, receipt.balance_after
        batch.dirty.add(card_id)
        if batch.held.get(card_id):  # it filled a gap (before a debit, or a load and a debit): clear what waited
            advance(tx, card_id, now=now, batch=batch)
        if own:
            batch.finish(tx)
        return "posted"
    batch.held.setdefault(card_id, set()).add(receipt.counter)
    status = "card_problem" if card["problem"] else "held"
    if not card["problem"]:
        for t, i, changed in advance(tx, card_id, now=now, batch=batch, skip=(terminal_id, tap_id)):
            if (t, i) == (terminal_id, tap_id):
                status = changed
    if own:
        batch.finish(tx)
    return status


def advance(tx, card_id: str, *, now: datetime, batch: Batch,
            skip: tuple[str, str] | None = None) -> list[tuple[str, str, str]]:
    """Clear the card's chain as far as it is complete, counting the debits into the batch's
    settlement (the batch holds the card). Returns (terminal id, tap id, status) of the
    receipts whose status changed; their taps are updated too, but for `skip` (the tap
    being stored, whose caller records the status itself)."""
    card = batch.cards[card_id]
    held = batch.held.setdefault(card_id, set())
    loads = batch.loads.setdefault(card_id, set())
    changed = []
    counter, balance = card["cleared_counter"], card["cleared_balance"]
    while not card["problem"]:
        load = taps_db.authorised_load(tx, card_id=card_id, counter=counter) if counter in loads else None
        if counter + 1 in held:
            nxt = taps_db.receipt(tx, card_id=card_id, counter=counter + 1)
            held.discard(counter + 1)
            if load is not None:  # a debit used the counter the load was authorised for
                _supersede(tx, load, now)
                loads.discard(counter)
            if nxt["balance_after"] != balance - nxt["amount"]:
                card["problem"] = (f"receipt {counter + 1} shows balance {nxt['balance_after']}, "
                                   f"expected {balance - nxt['amount']}")
                taps_db.set_receipt_status(tx, card_id=card_id, counter=counter + 1, status="balance_mismatch")
                changed.append((nxt["terminal_id"], nxt["tap_id"], "balance_mismatch"))
                break
            tid = batch.settlement.add(card, batch.revenue_account(tx, nxt["merchant_id"], nxt["currency"]),
                                       counter + 1, nxt["amount"], nxt["currency"])
            taps_db.set_receipt_status(tx, card_id=card_id, counter=counter + 1, status="posted", transfer_id=tid)
            changed.append((nxt["terminal_id"], nxt["tap_id"], "posted"))
            counter, balance = counter + 1, nxt["balance_after"]
        elif load is not None and counter + 2 in held:
            # A debit after the load's counter: the card took the top-up (its balance is checked there).
            taps_db.set_load_status(tx, load_id=load["id"], status="applied")
            loads.discard(counter)
            counter, balance = counter + 1, balance + load["amount"]
        else:
            break
    card["cleared_counter"], card["cleared_balance"] = counter, balance
    batch.dirty.add(card_id)
    batch.changed += changed
    for terminal_id, tap_id, status in changed:
        if (terminal_id, tap_id) != skip:
            taps_db.set_tap_clearing(tx, terminal_id=terminal_id, tap_id=tap_id, clearing=status)
    return changed


def _supersede(tx, load: dict, now: datetime) -> None:
    refund_id = f"purse_load_refund:{load['id']}"
    ledger.transfer(tx, transfer_id=refund_id, debit_account_id=float_account_id(load["card_id"]),
                    credit_account_id=wallets_db.wallet(tx, load["wallet_id"])["account_id"], amount=load["amount"],
                    currency=load["currency"], code=REFUND_CODE, now=now)
    taps_db.set_load_status(tx, load_id=load["id"], status="superseded", refund_transfer_id=refund_id)


# --- loads -------------------------------------------------------------------------------

def load_view(row: dict) -> dict:
    return {"id": row["id"], "object": "purse_load", "wallet_id": row["wallet_id"], "card_id": row["card_id"],
            "counter": row["counter"], "amount": row["amount"], "currency": row["currency"],
            "status": row["status"], "authorisation": row["authorisation"], "created_at": iso(row["created_at"])}


def authorise_load(tx, *, wallet: dict, card_id: str, counter: int, amount: int, currency: str,
                   seed: bytes, now: datetime) -> dict:
    """Move amount from the wallet to the card's float and sign the card's TOP-UP for counter.

    The wallet reads the card's counter and sends it; the authorisation is good for that
    counter only. If the card has moved on, it refuses the top-up, and the load is
    superseded (refunded) when the debit that used the counter clears.
    """
    if wallet["status"] != "active":
        raise Conflict("wallet_locked", "This wallet is locked.", "wallet_id")
    if card_id not in {card["card_id"] for card in issuer_db.wallet_cards(tx, wallet["id"])}:
        raise not_found("card of this wallet", "card_id")
    if issuer_db.denied_entry(tx, card_id) is not None:
        raise Conflict("card_denied", "This card is on the deny-list.", "card_id")
    if currency != wallet["currency"] or currency not in purse.CURRENCY_CODES:
        raise Invalid("currency_mismatch", f"The wallet holds {wallet['currency']}; a purse load is in it.",
                      "currency")
    if amount > purse.MAX_TRANSACTION_AMOUNT:
        raise Invalid("invalid_amount", f"A purse load is at most {purse.MAX_TRANSACTION_AMOUNT}.", "amount")
    state = ensure_card(tx, card_id, currency, now=now)
    if state["currency"] != currency:
        raise Invalid("currency_mismatch", f"The card's purse holds {state['currency']}.", "currency")
    if counter < state["cleared_counter"]:
        raise Conflict("stale_counter", f"The card's counter is past {counter}: read it again.", "counter")
    load_id = new_id("pl")
    reference = secrets.token_bytes(purse.NONCE_SIZE)
    authorisation = purse.authorise_topup(seed, bytes.fromhex(card_id), counter, amount, currency, reference, now)
    transfer = f"purse_load:{load_id}"
    row = {"id": load_id, "wallet_id": wallet["id"], "card_id": card_id, "counter": counter, "amount": amount,
           "currency": currency, "reference": reference.hex(), "authorisation": authorisation.hex(),
           "transfer_id": transfer, "status": "authorised", "refund_transfer_id": None, "created_at": unix(now)}
    if not taps_db.insert_load(tx, row):
        raise Conflict("load_exists", "A load is already authorised at this counter: apply it, "
                                      "or read the card's counter again.", "counter")
    ledger.transfer(tx, transfer_id=transfer, debit_account_id=wallet["account_id"],
                    credit_account_id=state["float_account_id"], amount=amount, currency=currency,
                    code=LOAD_CODE, now=now)
    return load_view(row)


def issuer_certificates(tx, card_ids: list[str]) -> dict[str, str]:
    """card id -> certificate hex, for the cards the issuer certified."""
    return taps_db.certificates(tx, card_ids)


def card_view(tx, card_id: str) -> dict:
    """A purse card as clearing sees it: how far its chain is cleared, what waits, what broke."""
    card = taps_db.card(tx, card_id)
    if card is None:
        raise not_found("purse card", "card_id")
    waiting = taps_db.waiting_receipts(tx, card_id)
    loads = taps_db.card_loads(tx, card_id)
    return {"object": "purse_card", "card_id": card_id, "currency": card["currency"],
            "cleared_counter": card["cleared_counter"], "cleared_balance": card["cleared_balance"],
            "float_balance": ledger.balance(tx, card["float_account_id"]).posted, "problem": card["problem"],
            "waiting": waiting, "loads": [load_view(r) for r in loads]}


def trusted_keys(tx) -> dict[bytes, bytes]:
    return issuer.trusted_keys(tx)
