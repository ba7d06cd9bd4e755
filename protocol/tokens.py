"""Keyed-hash tokens for account-based taps: a card number or a UID becomes a token.

Pure. A token is HMAC-SHA256 under a secret tokenisation key, over a label that
separates the kinds, then the card identifier; it is written as a readable prefix and
the first 160 bits of the MAC in lowercase base32 (32 characters):

    pan_<32 chars>   an EMV card number (PAN): stable and unique to the card
                     account, read from the card's records
    uid_<32 chars>   an ISO 14443 UID: low assurance, a UID can be copied or
                     chosen at random per tap by phones and privacy cards

The same key gives the same token for the same card on every terminal, so the gateway
can join taps into trips without ever seeing a card number. Without the key a token
reveals nothing of the PAN; the key lives with the other secrets of the program.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

PAN_PREFIX = "pan_"
UID_PREFIX = "uid_"
_PAN_LABEL = b"tapstack/token/pan/v1\x00"
_UID_LABEL = b"tapstack/token/uid/v1\x00"
_TOKEN_BYTES = 20  # 160 bits: no collision among any number of cards a pilot will see
MIN_KEY_BYTES = 16
_PAN_SEPARATORS = " -"


def normalise_pan(pan: str) -> str:
    """The PAN's digits, spaces and dashes removed; ValueError (not naming the PAN) otherwise."""
    if not isinstance(pan, str):
        raise ValueError("a PAN is a string of digits")
    digits = "".join(c for c in pan if c not in _PAN_SEPARATORS)
    if not (digits.isascii() and digits.isdigit()) or not 8 <= len(digits) <= 19:
        raise ValueError("a PAN is 8 to 19 digits")
    return digits


def _token(prefix: str, label: bytes, key: bytes, message: bytes) -> str:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a tokenisation key has at least {MIN_KEY_BYTES} bytes")
    mac = hmac.new(bytes(key), label + message, hashlib.sha256).digest()[:_TOKEN_BYTES]
    return prefix + base64.b32encode(mac).decode("ascii").lower()


def pan_token(key: bytes, pan: str) -> str:
    """The token of a card number, e.g. 'pan_3x5...' (36 characters)."""
    return _token(PAN_PREFIX, _PAN_LABEL, key, normalise_pan(pan).encode("ascii"))


def uid_token(key: bytes, uid: bytes) -> str:
    """The low-assurance token of a contactless UID (4, 7 or 10 bytes, or any other length)."""
    if not isinstance(uid, (bytes, bytearray)) or not uid:
        raise ValueError("a UID is at least one byte")
    return _token(UID_PREFIX, _UID_LABEL, key, bytes(uid))


def token_kind(token: str) -> str | None:
    """'pan' or 'uid' for a well-formed token, None for anything else."""
    for kind, prefix in (("pan", PAN_PREFIX), ("uid", UID_PREFIX)):
        body = token[len(prefix):] if isinstance(token, str) and token.startswith(prefix) else None
        if body is not None and len(body) == 32 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in body):
            return kind
    return None


def is_low_assurance(token: str) -> bool:
    """True for UID tokens: anyone can present a copied or random UID."""
    return token_kind(token) == "uid"
