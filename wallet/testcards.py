"""Ready-made purse cards for tests and demos, with the keys a terminal needs to accept them.

    demo = demo_purse_card(balance=500)
    demo.card            # a VirtualCard with the purse applet, for any transport
    demo.issuer_keys     # {key id: issuer public key}, for TapContext
    demo.token_key       # the token key, for TapContext

The issuer and token keys are fixed, public and for tests only; each card id gets its
own card key. Never use them for real value.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from protocol import certs, ed25519
from wallet.card import VirtualCard
from wallet.purse import PurseApplet, issue_purse
from wallet.state import FileStore, MemoryStore

DEMO_ISSUER_SEED = hashlib.sha256(b"tapstack demo issuer, tests only").digest()
DEMO_TOKEN_KEY = hashlib.sha256(b"tapstack demo token key, tests only").digest()
DEMO_CARD_ID = bytes.fromhex("5441500000000001")  # "TAP" 00 00 00 00 01
DEMO_NOT_AFTER = 2_000_000_000  # 2033-05-18


@dataclass
class DemoPurse:
    card: VirtualCard
    applet: PurseApplet
    store: MemoryStore | FileStore
    card_id: bytes
    issuer_seed: bytes
    issuer_keys: dict[bytes, bytes]
    token_key: bytes

    @property
    def balance(self) -> int:
        return self.store.state.balance


def demo_card_seed(card_id: bytes) -> bytes:
    return hashlib.sha256(b"tapstack demo card key, tests only" + bytes(card_id)).digest()


def demo_issuer_keys(issuer_seed: bytes = DEMO_ISSUER_SEED) -> dict[bytes, bytes]:
    public = ed25519.public_key(issuer_seed)
    return {certs.key_id(public): public}


def demo_purse_card(balance: int = 2000, currency: str = "CNY", card_id: bytes = DEMO_CARD_ID,
                    uid: bytes | None = None, locked: bool = False, path: Path | None = None,
                    not_after: int = DEMO_NOT_AFTER, issuer_seed: bytes = DEMO_ISSUER_SEED) -> DemoPurse:
    """A purse card signed by the demo issuer; kept in memory, or in a wallet file at path."""
    state = issue_purse(issuer_seed, demo_card_seed(card_id), card_id, currency, balance, not_after)
    if locked:
        state = replace(state, locked=True)
    uid = uid if uid is not None else b"\x08" + card_id[-3:]  # 4-byte random-UID form, as phones use
    store = FileStore.create(path, state, uid) if path is not None else MemoryStore(state)
    applet = PurseApplet(store)
    return DemoPurse(VirtualCard(uid, [applet], name=f"purse {card_id.hex()}"), applet, store, bytes(card_id),
                     issuer_seed, demo_issuer_keys(issuer_seed), DEMO_TOKEN_KEY)
