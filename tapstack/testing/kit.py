"""Ready cards and terminal contexts for tests written in Python (the `tapstack_cards` fixture).

    kit = CardKit()
    demo = kit.purse(balance=500)              # DemoPurse: .card, .balance, .card_id
    visa = kit.emv()                           # an EMV card with the test PAN
    metro = kit.uid("04C0FFEE123456")
    junk = kit.scripted({"00A40400*": "6A82"})
    club = kit.python(ClubCard(points=5))     # a tapstack.testing.Card subclass instance
    saved = kit.load("club.card.yaml")         # a card file or a saved image
    old = kit.replay("tap.trace.jsonl")
    ctx = kit.context(fare=200)                # TapContext with the demo issuer and token keys

Everything is signed with the demo issuer keys of wallet.testcards: for tests only.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from protocol.tokens import pan_token, uid_token
from tapstack.testing.cards import Answer, PythonCard, ScriptedCard
from tapstack.testing.replay import ReplayCard
from tapstack.testing.scenario import DEFAULT_NOW
from terminal.tap import TapContext
from wallet.card import VirtualCard, plain_uid_card
from wallet.emv_card import TEST_PAN, emv_card
from wallet.testcards import DEMO_TOKEN_KEY, DemoPurse, demo_issuer_keys, demo_purse_card


def _hex(value: bytes | str) -> bytes:
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value)


class CardKit:
    token_key = DEMO_TOKEN_KEY

    def purse(self, balance: int = 2000, currency: str = "CNY", card_id: bytes | str | None = None,
              uid: bytes | str | None = None, locked: bool = False) -> DemoPurse:
        options = {"card_id": _hex(card_id)} if card_id is not None else {}
        return demo_purse_card(balance=balance, currency=currency, uid=_hex(uid) if uid is not None else None,
                               locked=locked, **options)

    def emv(self, pan: str = TEST_PAN, uid: bytes | str = "08A1B2C3", expiry: str = "3012") -> VirtualCard:
        return emv_card(_hex(uid), pan=pan, expiry=expiry)

    def uid(self, uid: bytes | str) -> VirtualCard:
        return plain_uid_card(_hex(uid))

    def scripted(self, answers: Mapping[str, Answer], uid: bytes | str = "04A1B2C3D4E5F6",
                 default: bytes | str = "6D00", **options) -> ScriptedCard:
        """options: atr, protocol ("T=0"), state, ordered (see ScriptedCard)."""
        return ScriptedCard(_hex(uid), list(answers.items()), default=default, **options)

    def python(self, program, **options) -> PythonCard:
        """A card with its logic in Python: a tapstack.testing.Card instance. options: uid, atr, protocol."""
        return PythonCard(program, **options)

    def load(self, path: str | Path):
        """The card a card file (or a saved image) describes."""
        from tapstack.testing.cardfile import load_card

        return load_card(path).card

    def replay(self, path: str | Path, match: str = "shape") -> ReplayCard:
        return ReplayCard.from_file(path, match=match)

    def context(self, fare: int = 200, currency: str = "CNY", terminal_id: bytes = b"TERM0001",
                now: datetime = DEFAULT_NOW, deny=(), nonce: bytes | None = None) -> TapContext:
        return TapContext(fare=fare, currency=currency, terminal_id=terminal_id, issuer_keys=demo_issuer_keys(),
                          token_key=DEMO_TOKEN_KEY, now=now, deny=frozenset(deny), nonce=nonce)

    def pan_token(self, pan: str = TEST_PAN) -> str:
        return pan_token(DEMO_TOKEN_KEY, pan)

    def uid_token(self, uid: bytes | str) -> str:
        return uid_token(DEMO_TOKEN_KEY, _hex(uid))
