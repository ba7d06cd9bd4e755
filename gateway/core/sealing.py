"""Values sealed at rest with AES-256-GCM under one of the gateway's named secrets.

    stored = seal(key, "whsec_...", context="webhook_endpoint\nwe_...")
    unseal(key, stored, context="webhook_endpoint\nwe_...")  # -> "whsec_..."

A sealed value is "v1." and the base64 of a random 96-bit nonce and the ciphertext; the
context (the row it belongs to) is bound as associated data, so a sealed value copied
onto another row does not open. The key is config.secret(name): on PostgreSQL the
database's, sealed under every node's master key, so every node opens what any sealed.
"""
from __future__ import annotations

import base64
import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1."


class SealError(Exception):
    """A sealed value does not open: tampered with, or sealed under another key."""


@functools.lru_cache(maxsize=8)
def _cipher(key: bytes) -> AESGCM:
    return AESGCM(key)


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def seal(key: bytes, text: str, context: str) -> str:
    nonce = os.urandom(12)
    return PREFIX + base64.b64encode(nonce + _cipher(key).encrypt(nonce, text.encode(), context.encode())).decode()


def unseal(key: bytes, stored: str, context: str) -> str:
    try:
        raw = base64.b64decode(stored.removeprefix(PREFIX), validate=True)
        return _cipher(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except (ValueError, InvalidTag):
        raise SealError(f"a sealed value of {context.split(chr(10))[0]} does not open with this key") from None
