"""Card links: a rider links a bank or transit card (its token) to a wallet with one tap.

The flow: the wallet asks for a link code (`create_code`, valid LINK_CODE_SECONDS,
single use, stored only as a hash); the rider taps the card at a terminal in link
mode, which reads its token (pan_... for EMV, uid_... for other cards) and spends the
code with it (`link_by_code`). A token belongs to one wallet at a time: linking it to
another needs an unlink first (`unlink`). A uid_ token is linked as low assurance,
since a UID can be copied. No card number is ever seen here: only tokens.

Plain functions over a Tx; `now` is passed in.
"""
from __future__ import annotations

import secrets
from datetime import datetime

from gateway.core import iso, new_id, unix
from gateway.core.caller import Caller, key_hash
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.core.wallets import require_active, wallet_row
from gateway.store import card_links as links_db
from gateway.store import wallets as wallets_db
from protocol import tokens

LINK_CODE_SECONDS = 600
# Crockford base32 without I, L, O, U: a code a rider can read out or type.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10  # 50 bits; and only authenticated terminals may try one


def new_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_code(code: str) -> str:
    """The code as stored: upper case, dashes and spaces dropped (riders type it loosely)."""
    if not isinstance(code, str) or len(code) > 40:
        return ""
    return "".join(c for c in code.upper() if c not in "- ")


def link_view(row: dict) -> dict:
    return {"object": "card_link", "id": row["id"], "wallet_id": row["wallet_id"], "token": row["token"],
            "kind": row["token_kind"], "assurance": row["assurance"], "terminal_id": row["terminal_id"],
            "created_at": iso(row["created_at"])}


def create_code(tx, caller: Caller, wallet_id: str, *, now: datetime) -> dict:
    """A single-use link code for the wallet, valid LINK_CODE_SECONDS."""
    wallet = wallet_row(tx, caller, wallet_id)
    require_active(wallet)
    code = new_code()
    expires_at = unix(now) + LINK_CODE_SECONDS
    links_db.insert_code(tx, code_hash=key_hash(normalise_code(code)), wallet_id=wallet_id, expires_at=expires_at,
                         created_at=unix(now))
    return {"object": "card_link_code", "code": code, "wallet_id": wallet_id, "expires_at": iso(expires_at),
            "created_at": iso(unix(now))}


def check_token(token) -> str:
    """A pan_/uid_ token, or a 400 naming `token` (a card number is never accepted)."""
    if tokens.token_kind(token) is None:
        raise Invalid("invalid_parameter", "token must be a keyed-hash token (pan_... or uid_...).", "token")
    return token


def link_by_code(tx, *, code: str, token: str, terminal_id: str, now: datetime) -> dict:
    """Spend the code: link token to the code's wallet; the link.

    An unknown, expired or used code is not found (the three look alike to a terminal).
    A token linked to another wallet is a conflict (unlink it there first); linked to
    this wallet already, the existing link is the answer and the code is spent. The code
    is spent first, by a conditional update: of two taps with one code, one links."""
    token = check_token(token)
    code_hash = key_hash(normalise_code(code))
    wallet_id = links_db.spend_code(tx, code_hash=code_hash, now=unix(now))
    if wallet_id is None:
        raise not_found("link code (or it expired or was used)", "code")
    wallet = wallets_db.wallet(tx, wallet_id)
    require_active(wallet)
    link = {"id": new_id("cl"), "token": token, "wallet_id": wallet["id"], "token_kind": tokens.token_kind(token),
            "assurance": "low" if tokens.is_low_assurance(token) else "high", "terminal_id": terminal_id,
            "created_at": unix(now)}
    while not links_db.insert_link(tx, **link):
        existing = links_db.link_of_token(tx, token)
        if existing is None:
            continue  # unlinked since the insert met it: link it now
        if existing["wallet_id"] != wallet["id"]:
            raise Conflict("token_linked", "This card is linked to another wallet; unlink it there first.", "token")
        link = existing
        break
    links_db.set_code_link(tx, code_hash=code_hash, link_id=link["id"])
    return link_view(link)


def wallet_links(tx, caller: Caller, wallet_id: str) -> dict:
    wallet_row(tx, caller, wallet_id)
    return {"object": "list", "data": [link_view(r) for r in links_db.wallet_links(tx, wallet_id)],
            "has_more": False, "next_cursor": None}


def unlink(tx, caller: Caller, wallet_id: str, link_id: str) -> dict:
    """Remove the wallet's link; its trips from now on are no longer charged to it."""
    wallet_row(tx, caller, wallet_id)
    if not links_db.delete_link(tx, link_id=link_id, wallet_id=wallet_id):
        raise not_found("card link", "link_id")
    return {"id": link_id, "object": "card_link", "deleted": True}


def linked_wallet(tx, token: str) -> dict | None:
    """The wallet row a token is linked to, or None."""
    return links_db.linked_wallet(tx, token)
