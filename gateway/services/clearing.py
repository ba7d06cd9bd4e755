"""Purse clearing: value onto cards (loads) and card-signed debit receipts into the ledger.

The books. Each purse card has a purse_float account. A load moves money from the
wallet's account to the card's float *before* the card is told (the issuer's signed
TOP-UP authorisation is the answer), so the float always backs what the card carries.
A cleared debit moves the receipt's amount from the card's float to the operator's
revenue account: one transfer per receipt, id "purse:<card id>:<counter>", so a
receipt cleared twice moves money once.

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

import secrets
from datetime import datetime

from gateway import issuer, ledger
from gateway.errors import conflict, invalid, not_found
from gateway.services import iso, new_id, unix
from protocol import certs
from protocol import purse as p

TRANSFER_CODE = "purse_fare"
LOAD_CODE = "purse_load"
REFUND_CODE = "purse_load_refund"
WRITTEN_BY_ADVANCE = ("held", "posted", "balance_mismatch")  # statuses advance() records on the tap itself


def float_account_id(card_id: str) -> str:
    return f"purse:{card_id}"


def revenue_account_id(merchant_id: str, currency: str) -> str:
    return f"revenue:{merchant_id}:{currency}"


def transfer_id(card_id: str, counter: int) -> str:
    return f"purse:{card_id}:{counter}"


# --- verification (pure) ----------------------------------------------------------------

class CertificateCache:
    """Certificates verified once per card per batch (an Ed25519 verify saved per tap)."""

    def __init__(self, issuer_keys: dict[bytes, bytes]):
        self.issuer_keys = issuer_keys
        self._ok: dict[str, certs.Certificate | str] = {}

    def certificate(self, card_id: str, certificate_hex: str | None, at: int) -> certs.Certificate:
        """The card's verified certificate at time `at`; BadCertificate otherwise."""
        if certificate_hex is None:
            raise certs.BadCertificate("no certificate issued for this card id")
        cert = self._ok.get(certificate_hex)
        if cert is None:
            cert = certs.parse(bytes.fromhex(certificate_hex))
            if not cert.card_id.hex() == card_id:
                raise certs.BadCertificate("the certificate names another card")
            certs.verify(cert, self.issuer_keys, cert.not_after)  # signature and issuer key
            self._ok[certificate_hex] = cert
        if at > cert.not_after:
            raise certs.BadCertificate("certificate expired before the tap")
        return cert


def check_receipt(receipt_hex: str, *, card_id: str, amount: int, currency: str,
                  certificate_hex: str | None, cache: CertificateCache) -> tuple[p.Receipt | None, str | None]:
    """(the verified debit Receipt, None) or (None, the reason it is refused)."""
    try:
        receipt = p.parse_receipt(bytes.fromhex(receipt_hex))
    except (ValueError, p.PurseError):
        return None, "malformed_receipt"
    if receipt.kind != p.KIND_DEBIT or receipt.card_id.hex() != card_id:
        return None, "receipt_mismatch"
    if receipt.amount != amount or receipt.currency != currency:
        return None, "receipt_mismatch"
    try:
        cert = cache.certificate(card_id, certificate_hex, receipt.time)
    except certs.BadCertificate:
        return None, "bad_certificate" if certificate_hex else "unknown_card"
    try:
        p.check_receipt_signature(receipt, cert)
    except p.BadReceipt:
        return None, "forged_receipt"
    return receipt, None


# --- cards and accounts ------------------------------------------------------------------

def ensure_card(tx, card_id: str, currency: str, *, now: datetime) -> dict:
    row = tx.one("SELECT * FROM purse_cards WHERE card_id = :c", {"c": card_id})
    if row is not None:
        return row
    account = ledger.open_account(tx, kind="purse_float", currency=currency, owner_id=card_id,
                                  account_id=float_account_id(card_id), now=now)
    row = {"card_id": card_id, "currency": currency, "float_account_id": account["id"],
           "cleared_counter": 0, "cleared_balance": 0, "problem": None, "created_at": unix(now)}
    tx.insert("purse_cards", row)
    return row


def _revenue_account(tx, merchant_id: str, currency: str, now: datetime) -> str:
    account_id = revenue_account_id(merchant_id, currency)
    if ledger.get_account(tx, account_id) is None:
        ledger.open_account(tx, kind="operator_revenue", currency=currency, owner_id=merchant_id,
                            account_id=account_id, now=now)
    return account_id


# --- debits ------------------------------------------------------------------------------

def submit_debit(tx, receipt: p.Receipt, *, terminal_id: str, tap_id: str, merchant_id: str,
                 now: datetime) -> str:
    """Take a verified debit receipt into clearing; its status: posted, held, or a refusal
    (replayed_receipt, double_spend, stale_counter, balance_mismatch, card_problem)."""
    card_id = receipt.card_id.hex()
    raw = receipt.to_bytes().hex()
    seen = tx.one("SELECT receipt FROM purse_receipts WHERE card_id = :c AND counter = :n",
                  {"c": card_id, "n": receipt.counter})
    if seen is not None:
        return "replayed_receipt" if seen["receipt"] == raw else "double_spend"
    card = ensure_card(tx, card_id, receipt.currency, now=now)
    if receipt.counter <= card["cleared_counter"]:
        return "stale_counter"  # that counter was a load the card took, not this debit
    tx.insert("purse_receipts", {
        "card_id": card_id, "counter": receipt.counter, "amount": receipt.amount, "currency": receipt.currency,
        "balance_after": receipt.balance_after, "receipt": raw, "terminal_id": terminal_id, "tap_id": tap_id,
        "merchant_id": merchant_id, "status": "held", "transfer_id": None, "created_at": unix(now)})
    if card["problem"]:
        return "card_problem"
    if receipt.counter == card["cleared_counter"] + 1 or _load_at(tx, card_id, card["cleared_counter"]):
        advance(tx, card_id, now=now)
        status = tx.one("SELECT status FROM purse_receipts WHERE card_id = :c AND counter = :n",
                        {"c": card_id, "n": receipt.counter})["status"]
        return status
    return "held"


def _load_at(tx, card_id: str, counter: int) -> dict | None:
    return tx.one("SELECT * FROM purse_loads WHERE card_id = :c AND counter = :n AND status = 'authorised'",
                  {"c": card_id, "n": counter})


def advance(tx, card_id: str, *, now: datetime) -> list[tuple[str, str, str]]:
    """Clear the card's chain as far as it is complete. Returns (terminal id, tap id, status)
    of the receipts whose status changed, for the taps table."""
    card = tx.one("SELECT * FROM purse_cards WHERE card_id = :c", {"c": card_id})
    changed = []
    counter, balance = card["cleared_counter"], card["cleared_balance"]
    while not card["problem"]:
        nxt = tx.one("SELECT * FROM purse_receipts WHERE card_id = :c AND counter = :n",
                     {"c": card_id, "n": counter + 1})
        load = _load_at(tx, card_id, counter)
        if nxt is not None:
            if load is not None:  # a debit used the counter the load was authorised for
                _supersede(tx, load, now)
            if nxt["balance_after"] != balance - nxt["amount"]:
                problem = (f"receipt {counter + 1} shows balance {nxt['balance_after']}, "
                           f"expected {balance - nxt['amount']}")
                tx.execute("UPDATE purse_receipts SET status = 'balance_mismatch' WHERE card_id = :c AND counter = :n",
                           {"c": card_id, "n": counter + 1})
                tx.execute("UPDATE purse_cards SET problem = :p WHERE card_id = :c", {"p": problem, "c": card_id})
                changed.append((nxt["terminal_id"], nxt["tap_id"], "balance_mismatch"))
                break
            tid = transfer_id(card_id, counter + 1)
            ledger.transfer(tx, transfer_id=tid, debit_account_id=card["float_account_id"],
                            credit_account_id=_revenue_account(tx, nxt["merchant_id"], nxt["currency"], now),
                            amount=nxt["amount"], currency=nxt["currency"], code=TRANSFER_CODE, now=now)
            tx.execute("UPDATE purse_receipts SET status = 'posted', transfer_id = :t WHERE card_id = :c AND counter = :n",
                       {"t": tid, "c": card_id, "n": counter + 1})
            changed.append((nxt["terminal_id"], nxt["tap_id"], "posted"))
            counter, balance = counter + 1, nxt["balance_after"]
        elif load is not None and tx.one(
                "SELECT 1 FROM purse_receipts WHERE card_id = :c AND counter = :n", {"c": card_id, "n": counter + 2}):
            # A debit after the load's counter: the card took the top-up (its balance is checked there).
            tx.execute("UPDATE purse_loads SET status = 'applied' WHERE id = :id", {"id": load["id"]})
            counter, balance = counter + 1, balance + load["amount"]
        else:
            break
    tx.execute("UPDATE purse_cards SET cleared_counter = :n, cleared_balance = :b WHERE card_id = :c",
               {"n": counter, "b": balance, "c": card_id})
    for terminal_id, tap_id, status in changed:
        tx.execute("UPDATE transit_taps SET clearing = :s WHERE terminal_id = :t AND tap_id = :i",
                   {"s": status, "t": terminal_id, "i": tap_id})
    return changed


def _supersede(tx, load: dict, now: datetime) -> None:
    wallet = tx.one("SELECT account_id FROM wallets WHERE id = :id", {"id": load["wallet_id"]})
    refund_id = f"purse_load_refund:{load['id']}"
    ledger.transfer(tx, transfer_id=refund_id, debit_account_id=float_account_id(load["card_id"]),
                    credit_account_id=wallet["account_id"], amount=load["amount"], currency=load["currency"],
                    code=REFUND_CODE, now=now)
    tx.execute("UPDATE purse_loads SET status = 'superseded', refund_transfer_id = :r WHERE id = :id",
               {"r": refund_id, "id": load["id"]})


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
        raise conflict("wallet_locked", "This wallet is locked.", "wallet_id")
    card = tx.one("SELECT card_id FROM issuer_cards WHERE card_id = :c AND wallet_id = :w",
                  {"c": card_id, "w": wallet["id"]})
    if card is None:
        raise not_found("card of this wallet", "card_id")
    if tx.one("SELECT 1 FROM issuer_deny_list WHERE entry = :c", {"c": card_id}):
        raise conflict("card_denied", "This card is on the deny-list.", "card_id")
    if currency != wallet["currency"] or currency not in p.CURRENCY_CODES:
        raise invalid("currency_mismatch", f"The wallet holds {wallet['currency']}; a purse load is in it.",
                      "currency")
    if amount > p.MAX_AMOUNT:
        raise invalid("invalid_amount", f"A purse load is at most {p.MAX_AMOUNT}.", "amount")
    state = ensure_card(tx, card_id, currency, now=now)
    if state["currency"] != currency:
        raise invalid("currency_mismatch", f"The card's purse holds {state['currency']}.", "currency")
    if counter < state["cleared_counter"]:
        raise conflict("stale_counter", f"The card's counter is past {counter}: read it again.", "counter")
    if tx.one("SELECT 1 FROM purse_loads WHERE card_id = :c AND counter = :n", {"c": card_id, "n": counter}):
        raise conflict("load_exists", "A load is already authorised at this counter: apply it, "
                                      "or read the card's counter again.", "counter")
    load_id = new_id("pl")
    reference = secrets.token_bytes(p.NONCE_SIZE)
    authorisation = p.authorise_topup(seed, bytes.fromhex(card_id), counter, amount, currency, reference, now)
    transfer = f"purse_load:{load_id}"
    ledger.transfer(tx, transfer_id=transfer, debit_account_id=wallet["account_id"],
                    credit_account_id=state["float_account_id"], amount=amount, currency=currency,
                    code=LOAD_CODE, now=now)
    row = {"id": load_id, "wallet_id": wallet["id"], "card_id": card_id, "counter": counter, "amount": amount,
           "currency": currency, "reference": reference.hex(), "authorisation": authorisation.hex(),
           "transfer_id": transfer, "status": "authorised", "refund_transfer_id": None, "created_at": unix(now)}
    tx.insert("purse_loads", row)
    return load_view(row)


def issuer_certificates(tx, card_ids: list[str]) -> dict[str, str]:
    """card id -> certificate hex, for the cards the issuer certified."""
    found = {}
    for start in range(0, len(card_ids), 500):
        chunk = card_ids[start:start + 500]
        names = {f"c{i}": c for i, c in enumerate(chunk)}
        rows = tx.query(f"SELECT card_id, certificate FROM issuer_cards WHERE card_id IN "
                        f"({', '.join(':' + n for n in names)})", names)
        found.update({r["card_id"]: r["certificate"] for r in rows})
    return found


def trusted_keys(tx) -> dict[bytes, bytes]:
    return issuer.trusted_keys(tx)


def purse_books(tx) -> dict:
    """Per currency: money in card floats, what loads put there and what clearing took out."""
    rows = tx.query("SELECT currency, SUM(credits_posted - debits_posted) AS floats FROM ledger_accounts "
                    "WHERE kind = 'purse_float' GROUP BY currency ORDER BY currency")
    return {r["currency"]: r["floats"] for r in rows}
