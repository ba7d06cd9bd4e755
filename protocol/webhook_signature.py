"""The `Tapstack-Signature` header of a webhook delivery (Stripe's scheme).

    Tapstack-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The key is the endpoint's signing secret exactly as handed out (the whole `whsec_...`
string, UTF-8), so a receiver can check it with any verifier written for Stripe's
`Stripe-Signature` header. During a secret roll a header may carry several v1 values;
one match is enough. The timestamp is signed with the body, so an old delivery replayed
later fails the tolerance check.

Pure: the time is passed in, nothing is read from a clock.
"""
from __future__ import annotations

import hashlib
import hmac

SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds, Stripe's default


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex v1 signature of body sent at unix time timestamp."""
    signed = str(int(timestamp)).encode("ascii") + b"." + bytes(body)
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: int, body: bytes, *more_secrets: str | bytes) -> str:
    """The header value for body sent at unix time timestamp: one v1 value per secret (the
    current one first, then those still valid during a roll)."""
    values = ",".join(f"{SCHEME}={signature(s, timestamp, body)}" for s in (secret, *more_secrets))
    return f"t={int(timestamp)},{values}"


def parse(header: str) -> tuple[int | None, list[str]]:
    """(timestamp or None, the v1 signatures) of a header; unknown schemes are ignored."""
    timestamp, signatures = None, []
    for item in str(header).split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value.strip())
    return timestamp, signatures


def verify(secret: str | bytes, header: str, body: bytes, now: int,
           tolerance: int = DEFAULT_TOLERANCE) -> bool:
    """True when one v1 value of header signs body and t is within tolerance seconds of now.

    Never raises for a malformed header. Every candidate is compared in constant time.
    """
    timestamp, candidates = parse(header)
    if timestamp is None or not candidates:
        return False
    if abs(int(now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode("ascii")
    ok = False
    for candidate in candidates:
        # no early exit: the time taken does not tell which candidate matched
        ok |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return ok
