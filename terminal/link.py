"""Link mode: a rider links a bank or transit card to a wallet by tapping it once.

The wallet shows a link code (POST /v1/wallets/<id>/card-links); the terminal, given the
code, reads the card the way a validator classifies it (terminal.tap): an EMV card
gives its PAN token, any other ISO 14443 card its low-assurance UID token. The token,
never a card number, goes to the gateway with the code (POST /v1/card-links/<code>/tap).
A purse card is refused: it pays by itself, from the value it carries.

    tapstack terminal link --reader pcsc --code 7KQ2M-XW4PD --gateway http://127.0.0.1:8000 \\
        --terminal-key @terminal.key --token-key @token.key
"""
from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from protocol.uplink import Client, GatewayError, GatewayRefused
from terminal.tap import TapContext, tap

NO_TERMINAL_ID = bytes(8)  # link mode debits nothing, so no receipt names this terminal
DEFAULT_WAIT = 30.0


class LinkRefused(Exception):
    """The card cannot be linked, or the gateway would not link it; the message says why in one line."""


@dataclass(frozen=True)
class LinkedCard:
    kind: str  # emv | uid
    token: str
    wallet_id: str
    assurance: str  # high | low
    link_id: str


def read_token(session, token_key: bytes, now: datetime):
    """(kind, token) of the card in the field; LinkRefused for a purse or an unreadable card.

    terminal.tap decides the card's kind. It is given no issuer keys, so a purse card's
    certificate cannot verify and the tap ends before any DEBIT is sent: link mode never
    takes money from a card."""
    ctx = TapContext(fare=1, currency="CNY", terminal_id=NO_TERMINAL_ID, issuer_keys={}, token_key=token_key,
                     now=now)
    outcome, _ = tap(session, ctx)
    if outcome.kind == "purse":
        raise LinkRefused("purse cards pay by themselves: this card cannot be linked to a wallet")
    if outcome.kind in ("emv", "uid") and outcome.token:
        return outcome.kind, outcome.token
    raise LinkRefused(f"the card cannot be linked: {outcome.detail or outcome.reason}")


def idempotency_key(code: str, token: str) -> str:
    """One key per (code, token): a retried post links once; another card with the same code is a new request."""
    return "link-" + hashlib.sha256(f"{code}\n{token}".encode()).hexdigest()[:40]


def post_link(client: Client, code: str, kind: str, token: str) -> LinkedCard:
    path = f"/v1/card-links/{urllib.parse.quote(code.strip(), safe='')}/tap"
    try:
        answer = client.post(path, {"token": token}, idempotency_key=idempotency_key(code, token))
    except GatewayRefused as e:
        if e.status == 404:
            raise LinkRefused("the link code is unknown, expired or already used: ask the wallet for a new one") from None
        if e.error.get("code") == "token_linked":
            raise LinkRefused("this card is linked to another wallet: unlink it there first") from None
        raise LinkRefused(f"the gateway refused the link: {e.error.get('message') or e.status}") from None
    except GatewayError as e:
        raise LinkRefused(f"the gateway cannot be reached: {e}") from None
    return LinkedCard(kind, token, answer["wallet_id"], answer["assurance"], answer["id"])


def link_card(reader, client: Client, code: str, token_key: bytes, *, wait: float = DEFAULT_WAIT,
              clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> LinkedCard:
    """Wait for one card, read its token and link it with the code; LinkRefused saying why not."""
    session = reader.wait_for_card(wait)
    if session is None:
        raise LinkRefused(f"no card was presented within {wait:g} s")
    try:
        kind, token = read_token(session, token_key, clock())
    except LinkRefused:
        reader.signal("deny")
        raise
    finally:
        session.close()
    try:
        linked = post_link(client, code, kind, token)
    except LinkRefused:
        reader.signal("deny")
        raise
    reader.signal("accept")
    return linked


def describe(linked: LinkedCard) -> str:
    what = "bank card" if linked.kind == "emv" else "card (by its UID: low assurance, a UID can be copied)"
    return f"linked {what} {linked.token[:12]}... to wallet {linked.wallet_id}"


def _command():
    import click

    from protocol.uplink import parse_terminal_key
    from terminal.readers import SPEC_HELP
    from terminal.settings import hex_arg, secret_text

    @click.command("link")
    @click.option("--reader", "reader_spec", default="pcsc", show_default=True, help=SPEC_HELP)
    @click.option("--code", required=True, help="The link code the wallet shows (POST /v1/wallets/<id>/card-links).")
    @click.option("--gateway", required=True, help="Gateway base URL, e.g. http://127.0.0.1:8000.")
    @click.option("--terminal-key", required=True, help="KEY_ID:SECRET_HEX from 'POST /v1/terminals', or @FILE.")
    @click.option("--token-key", required=True, help="Token key in hex (>= 16 bytes), or @FILE holding it.")
    @click.option("--wait", type=click.FloatRange(0.1, 3600), default=DEFAULT_WAIT, show_default=True,
                  help="Seconds to wait for the card.")
    def link_command(reader_spec, code, gateway, terminal_key, token_key, wait):
        """Link a bank or transit card to a wallet: tap it once with the wallet's link code."""
        from terminal import readers

        try:
            key_id, secret = parse_terminal_key(secret_text(terminal_key))
            token = hex_arg(secret_text(token_key), "--token-key")
            if len(token) < 16:
                raise ValueError("--token-key must be at least 16 bytes")
            reader = readers.open_reader(reader_spec)
        except (ValueError, OSError, readers.ReaderError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"tap the card to link on {reader.name} (code {code})")
        try:
            linked = link_card(reader, Client(gateway, key_id, secret), code, token, wait=wait,
                               clock=lambda: datetime.now(timezone.utc))
        except (LinkRefused, readers.ReaderError) as e:
            raise click.ClickException(str(e)) from None
        finally:
            reader.close()
        click.echo(describe(linked))

    return link_command


link_command = _command()
