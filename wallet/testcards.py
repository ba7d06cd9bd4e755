"""Ready-made purse cards for tests and demos, with the keys a terminal needs to accept them.

    demo = demo_purse_card(balance=500)
    demo.card            # a VirtualCard with the purse applet, for any transport
    demo.issuer_keys     # {key id: issuer public key}, for TapContext
    demo.token_key       # the token key, for TapContext

The issuer and token keys are fixed, public and for tests only; each card id gets its
own card key. Never use them for real value. `tapstack wallet new-purse` writes such a
card to a wallet file; `tapstack wallet purse` shows a wallet file's purse.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import click

from protocol import certs, ed25519
from protocol.purse import (
    CURRENCY_CODES, ID_SIZE, KIND_DEBIT, MAX_BALANCE, PurseError, parse_receipt,
)
from wallet.card import VirtualCard
from wallet.purse import PurseApplet, issue_purse
from wallet.state import FileStore, MemoryStore, WalletFileError

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


# --- `tapstack wallet new-purse` and `tapstack wallet purse` --------------------------------

@click.command("new-purse")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--balance", type=click.IntRange(0, MAX_BALANCE), default=2000, show_default=True,
              help="Opening balance in minor units (fen).")
@click.option("--currency", type=click.Choice(sorted(CURRENCY_CODES)), default="CNY", show_default=True)
@click.option("--card-id", default=DEMO_CARD_ID.hex(), show_default=True, help="8 bytes in hex.")
@click.option("--uid", default=None, help="The card's UID in hex (4, 7 or 10 bytes); from the card id if not given.")
def new_purse_command(path: Path, balance: int, currency: str, card_id: str, uid: str | None):
    """Write a wallet file holding a purse card signed by the demo issuer (tests and demos only)."""
    try:
        card = bytes.fromhex(card_id)
        uid_bytes = bytes.fromhex(uid) if uid is not None else None
    except ValueError:
        raise click.UsageError("--card-id and --uid are hex") from None
    if len(card) != ID_SIZE or (uid_bytes is not None and len(uid_bytes) not in (4, 7, 10)):
        raise click.UsageError("--card-id is 8 bytes; --uid is 4, 7 or 10 bytes")
    try:
        demo = demo_purse_card(balance=balance, currency=currency, card_id=card, uid=uid_bytes, path=path)
    except (WalletFileError, OSError) as e:
        raise click.ClickException(str(e)) from None
    key_id, = demo.issuer_keys
    click.echo(f"{path}: purse card {card.hex()}, uid {demo.card.uid.hex()}, {balance} {currency}, "
               f"demo issuer key {key_id.hex()}")


@click.command("purse")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def show_purse_command(path: Path):
    """Show the purse of a wallet file: balance, counter, status and its receipt log."""
    try:
        state = FileStore.open(path).state
    except WalletFileError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"card {state.card_id.hex()}  {state.balance} {state.currency}  counter {state.counter}  "
               f"{'locked' if state.locked else 'active'}")
    for raw in reversed(state.receipts):
        try:
            r = parse_receipt(raw)
        except PurseError as e:
            click.echo(f"  unreadable receipt: {e}")
            continue
        what = "debit " if r.kind == KIND_DEBIT else "top-up"
        where = r.terminal_id.decode("ascii", "replace") if r.kind == KIND_DEBIT else "issuer"
        click.echo(f"  #{r.counter:<6} {what} {r.amount:>7}  balance {r.balance_after:>7}  "
                   f"{r.at:%Y-%m-%d %H:%M:%S}Z  {where}  nonce {r.nonce.hex()}")
