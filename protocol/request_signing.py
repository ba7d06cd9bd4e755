"""HMAC-SHA256 signatures on the terminal's requests to the gateway.

Pure: the terminal signs with these functions and the gateway checks with them,
so both sides build the same canonical request. A signed request carries four
headers:

    Tapstack-Key-Id             the terminal's key id ("tk_...")
    Tapstack-Timestamp          Unix seconds, decimal
    Tapstack-Nonce              16 to 64 characters [A-Za-z0-9_-], never reused by a key
    Tapstack-Request-Signature  lowercase hex HMAC-SHA256(secret, canonical request)

The canonical request is six lines joined by "\\n":

    TAPSTACK-HMAC-SHA256
    <METHOD>
    <path, with "?query" when there is one, exactly as sent (tapstack ids need no escaping)>
    <timestamp>
    <nonce>
    <lowercase hex SHA-256 of the body bytes>

The body hash binds the exact bytes sent, so a reordered JSON key is a new
request. Timestamps outside WINDOW_SECONDS of the gateway's clock are refused,
and the gateway remembers nonces for longer than that window.
"""
from __future__ import annotations

import hashlib
import hmac
import re

VERSION = "TAPSTACK-HMAC-SHA256"
WINDOW_SECONDS = 300

KEY_ID_HEADER = "Tapstack-Key-Id"
TIMESTAMP_HEADER = "Tapstack-Timestamp"
NONCE_HEADER = "Tapstack-Nonce"
SIGNATURE_HEADER = "Tapstack-Request-Signature"

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def canonical_request(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """The bytes that are signed: method, path, timestamp, nonce and the body's hash."""
    lines = (VERSION, method.upper(), path, str(int(timestamp)), nonce,
             hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode()


def sign(secret: bytes, method: str, path: str, timestamp: int, nonce: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the canonical request under the terminal's secret."""
    message = canonical_request(method, path, timestamp, nonce, body)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_headers(key_id: str, secret: bytes, method: str, path: str, body: bytes,
                   *, timestamp: int, nonce: str) -> dict[str, str]:
    """The four headers a terminal adds to a request (timestamp and nonce passed in)."""
    if not valid_nonce(nonce):
        raise ValueError("nonce must be 16 to 64 characters of [A-Za-z0-9_-]")
    return {
        KEY_ID_HEADER: key_id,
        TIMESTAMP_HEADER: str(int(timestamp)),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, method, path, timestamp, nonce, body),
    }


def valid_nonce(nonce: str) -> bool:
    return bool(_NONCE.fullmatch(nonce))


def parse_timestamp(text: str) -> int | None:
    """The header's Unix seconds, or None when it is not a plain decimal integer."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    return int(text)


def within_window(timestamp: int, now_unix: float, window: int = WINDOW_SECONDS) -> bool:
    """True when the request's timestamp is at most `window` seconds from now, either way."""
    return abs(now_unix - timestamp) <= window


def verify(secret: bytes, method: str, path: str, timestamp: int, nonce: str, body: bytes,
           signature: str) -> bool:
    """Constant-time check of a signature; the window and the nonce are checked apart."""
    if not signature.isascii():
        return False
    expected = sign(secret, method, path, timestamp, nonce, body)
    return hmac.compare_digest(expected, signature.strip().lower())
