"""The purse applet: the card side of protocol/purse.py.

`answer(state, command)` is the whole applet as a pure function: a PurseState and a
command APDU in, the next state and the response bytes out. `PurseApplet` is the thin
shell that plugs it into a VirtualCard (wallet/card.py): it saves a changed state
through its store BEFORE the response leaves, answers 6581 (memory failure, nothing
changed) when the save fails, and never raises.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from protocol import certs, ed25519
from protocol.purse import (
    AID, CLA, DEBIT_SIZE, Fci, ID_SIZE, INS_DEBIT, INS_GET_RECEIPT, INS_LOCK, INS_TOPUP,
    KIND_DEBIT, KIND_TOPUP, LOCK_DOMAIN, MAX_AMOUNT, MAX_BALANCE, MAX_COUNTER,
    PurseError, Receipt, SW_BALANCE_LIMIT, SW_INSUFFICIENT_BALANCE, SW_LOCKED,
    SW_NO_RECEIPT, TOPUP_SIZE, parse_debit, parse_topup, sign_receipt, topup_message,
)
from protocol.apdu import (SW_CLA_NOT_SUPPORTED, SW_CONDITIONS_NOT_SATISFIED, SW_INS_NOT_SUPPORTED,
                           SW_MEMORY_FAILURE, SW_OK, SW_SECURITY_STATUS, SW_UNKNOWN, SW_WRONG_DATA,
                           SW_WRONG_LENGTH, SW_WRONG_P1P2, CommandAPDU, respond)
from wallet.card import VirtualCard
from wallet.state import FileStore, MemoryStore, PurseState

_NO_TERMINAL = bytes(ID_SIZE)


def fci(state: PurseState) -> Fci:
    return Fci(state.card_id, state.currency, state.balance, state.counter, state.locked, state.certificate)


def answer(state: PurseState, command: CommandAPDU) -> tuple[PurseState, bytes]:
    """One command to the selected purse: (next state, response APDU bytes). Pure."""
    if command.cla != CLA:
        if command.cla == 0x00:  # interindustry class: only SELECT by name, which the card routes
            return state, respond(SW_WRONG_P1P2 if command.ins == 0xA4 else SW_INS_NOT_SUPPORTED)
        return state, respond(SW_CLA_NOT_SUPPORTED)
    handler = _HANDLERS.get(command.ins)
    if handler is None:
        return state, respond(SW_INS_NOT_SUPPORTED)
    if command.p1 or command.p2:
        return state, respond(SW_WRONG_P1P2)
    return handler(state, command.data)


def _debit(state: PurseState, data: bytes) -> tuple[PurseState, bytes]:
    if len(data) != DEBIT_SIZE:
        return state, respond(SW_WRONG_LENGTH)
    try:
        debit = parse_debit(data)
    except PurseError:  # unknown currency code
        return state, respond(SW_WRONG_DATA)
    if state.locked:
        return state, respond(SW_LOCKED)
    if not 1 <= debit.amount <= MAX_AMOUNT or debit.currency != state.currency:
        return state, respond(SW_WRONG_DATA)
    if state.counter >= MAX_COUNTER:
        return state, respond(SW_CONDITIONS_NOT_SATISFIED)
    if debit.amount > state.balance:
        return state, respond(SW_INSUFFICIENT_BALANCE)
    receipt = sign_receipt(state.seed, Receipt(
        KIND_DEBIT, state.card_id, state.counter + 1, debit.amount, state.balance - debit.amount,
        state.currency, debit.terminal_id, debit.nonce, debit.time)).to_bytes()
    return (state.with_receipt(receipt, balance=state.balance - debit.amount, counter=state.counter + 1),
            respond(SW_OK, receipt))


def _topup(state: PurseState, data: bytes) -> tuple[PurseState, bytes]:
    if len(data) != TOPUP_SIZE:
        return state, respond(SW_WRONG_LENGTH)
    try:
        topup = parse_topup(data)
    except PurseError:
        return state, respond(SW_WRONG_DATA)
    if state.locked:
        return state, respond(SW_LOCKED)
    if not 1 <= topup.amount <= MAX_AMOUNT or topup.currency != state.currency:
        return state, respond(SW_WRONG_DATA)
    if not ed25519.verify(state.issuer_public_key, topup_message(state.card_id, topup), topup.signature):
        return state, respond(SW_SECURITY_STATUS)
    if topup.counter != state.counter or state.counter >= MAX_COUNTER:  # stale or replayed
        return state, respond(SW_CONDITIONS_NOT_SATISFIED)
    if state.balance + topup.amount > MAX_BALANCE:
        return state, respond(SW_BALANCE_LIMIT)
    balance = state.balance + topup.amount
    receipt = sign_receipt(state.seed, Receipt(
        KIND_TOPUP, state.card_id, state.counter + 1, topup.amount, balance, state.currency,
        _NO_TERMINAL, topup.reference, topup.time)).to_bytes()
    return state.with_receipt(receipt, balance=balance, counter=state.counter + 1), respond(SW_OK, receipt)


def _get_receipt(state: PurseState, data: bytes) -> tuple[PurseState, bytes]:
    if len(data) not in (0, 4):
        return state, respond(SW_WRONG_LENGTH)
    if not data:
        found = state.receipts[-1:]
    else:  # the receipt of one transaction, by its counter (offset 10 of a receipt)
        found = [r for r in state.receipts if r[10:14] == data]
    return state, respond(SW_OK, found[0]) if found else respond(SW_NO_RECEIPT)


def _lock(state: PurseState, data: bytes) -> tuple[PurseState, bytes]:
    if len(data) != ed25519.SIGNATURE_SIZE:
        return state, respond(SW_WRONG_LENGTH)
    if not ed25519.verify(state.issuer_public_key, LOCK_DOMAIN + state.card_id, data):
        return state, respond(SW_SECURITY_STATUS)
    if state.locked:
        return state, respond(SW_OK)
    return replace(state, locked=True), respond(SW_OK)


_HANDLERS = {INS_DEBIT: _debit, INS_TOPUP: _topup, INS_GET_RECEIPT: _get_receipt, INS_LOCK: _lock}


class PurseApplet:
    """The purse as an Applet of wallet/card.py, keeping its state in a store."""

    aid = AID

    def __init__(self, store: MemoryStore | FileStore):
        self.store = store

    @classmethod
    def from_file(cls, path: Path) -> PurseApplet:
        """The purse of a wallet file (raises WalletFileError with a one-line reason)."""
        return cls(FileStore.open(path))

    @property
    def state(self) -> PurseState:
        return self.store.state

    def select(self, command: CommandAPDU) -> bytes:
        try:
            return respond(SW_OK, fci(self.store.state).to_bytes())
        except Exception:
            return respond(SW_UNKNOWN)

    def process(self, command: CommandAPDU) -> bytes:
        try:
            state = self.store.state
            new, response = answer(state, command)
            if new is not state:
                try:
                    self.store.save(new)  # durable before the answer leaves the card
                except Exception:
                    return respond(SW_MEMORY_FAILURE)
            return response
        except Exception:
            return respond(SW_UNKNOWN)

    def deselect(self) -> None:
        pass  # the purse keeps no per-session state


def new_purse(seed: bytes, card_id: bytes, certificate: bytes | certs.Certificate,
              issuer_public_key: bytes, currency: str, balance: int) -> PurseState:
    """Personalise a purse: card key seed, card id, its certificate, the issuer key, opening balance.
    Raises ValueError if they do not fit together (certificate of another card or key, ...)."""
    raw = certificate.to_bytes() if isinstance(certificate, certs.Certificate) else bytes(certificate)
    return PurseState(bytes(card_id), bytes(seed), raw, bytes(issuer_public_key), currency, balance)


def issue_purse(issuer_seed: bytes, card_seed: bytes, card_id: bytes, currency: str, balance: int,
                not_after: int) -> PurseState:
    """Issuer and personalisation in one step: certify the card key and personalise the purse."""
    cert = certs.issue(issuer_seed, card_id, ed25519.public_key(card_seed), not_after)
    return new_purse(card_seed, card_id, cert, ed25519.public_key(issuer_seed), currency, balance)


def purse_card(store: MemoryStore | FileStore, uid: bytes, name: str = "purse card") -> VirtualCard:
    """A contactless card carrying the purse applet."""
    return VirtualCard(uid, [PurseApplet(store)], name=name)
