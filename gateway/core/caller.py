"""Who is calling, as a plain value, and how keys are made and stored.

gateway.http.auth finds the Caller of a request (bearer key or signed terminal
request); the core only reads it: what kind of caller it is and whose objects it sees.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KINDS = ("operator", "merchant", "wallet", "terminal")


@dataclass(frozen=True)
class Caller:
    kind: str                      # operator | merchant | wallet | terminal
    id: str                        # "operator", "mer_...", "wal_...", "term_..."
    merchant_id: str | None = None  # the merchant a merchant or terminal acts for


def key_hash(key: str) -> str:
    """How a sk_/wk_/pc_ key is stored and looked up."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)
