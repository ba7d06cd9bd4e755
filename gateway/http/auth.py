"""Who is calling: operator, merchant, wallet or terminal.

    @bp.post("/v1/things")
    @requires("merchant", "terminal")
    def create_thing(): caller = current_caller(); ...

Credentials:
- operator: `Authorization: Bearer op_<hex>`, derived from config.secret("operator_key")
  and printed by `tapstack gateway operator-key`.
- merchant: `Bearer sk_...`; wallet: `Bearer wk_...`. Each is 256 random bits handed out
  once and stored only as its SHA-256. A slow password hash (bcrypt, scrypt) exists to
  make guessing low-entropy passwords expensive; nobody can guess a 256-bit key, so
  SHA-256 loses nothing, and it lets a request find its caller by an indexed lookup.
- terminal: HMAC-SHA256-signed requests (protocol.request_signing): key id, timestamp
  within 300 s of the gateway's clock, a nonce never seen before for that key, and the
  signature over method, path, timestamp, nonce and the body's SHA-256. The secret is
  HMAC(config.secret("terminal_master"), key_id), so no terminal secret is stored.

Unknown and malformed credentials answer 401 without saying which part was wrong
beyond a code; a caller of the wrong kind answers 403.

A known sk_/wk_ key is remembered per process for CALLER_CACHE_SECONDS (who a key
belongs to never changes), so a busy caller costs no database read per request.
What can change is checked where it matters, inside the write: a locked wallet is
refused by the service that spends from it. `forget_caller(runtime, id)` drops a
caller from this process's cache at once: a revoked key stops at once in the process
that revoked it and within CALLER_CACHE_SECONDS in every other process and node; a
rolled key is never remembered past its expiry. A terminal's status is read with
every signed request, so a suspension or revocation holds from the next request.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import time

from flask import g, request

from gateway.core.caller import KINDS, Caller, key_hash
from gateway.core.errors import Forbidden
from gateway.http import rate_limits
from gateway.http.errors import unauthenticated
from gateway.http.runtime import runtime
from gateway.store import auth as auth_db
from gateway.store import merchants as merchants_db
from gateway.store import terminals as terminals_db
from gateway.store import wallets as wallets_db
from protocol import request_signing as rs

NONCE_RETENTION_SECONDS = 2 * rs.WINDOW_SECONDS
CALLER_CACHE_SECONDS = 5.0
CALLER_CACHE_SIZE = 10_000


def operator_key(config) -> str:
    """The operator's bearer key; `config` is a Config or the app's Runtime."""
    return "op_" + config.secret("operator_key").hex()


def terminal_secret(config, key_id: str) -> bytes:
    """A terminal's HMAC key; `config` is a Config or the app's Runtime."""
    return hmac.new(config.secret("terminal_master"), key_id.encode(), hashlib.sha256).digest()


def current_caller() -> Caller:
    caller = g.get("caller")
    if caller is None:
        raise RuntimeError("current_caller() outside a @requires view")
    return caller


def requires(*kinds: str):
    """Authenticate the request and admit only callers of these kinds."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown caller kind(s): {sorted(unknown)}")

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            caller = authenticate()
            if caller.kind not in kinds:
                raise Forbidden("forbidden", f"A {caller.kind} may not use this endpoint.")
            # A terminal's request was counted with its nonce, an idempotent POST's is in its write.
            if caller.kind in rate_limits.BEARER and not getattr(view, "counts_rate_limit", False):
                rate_limits.check(runtime(), caller)
            g.caller = caller
            return view(*args, **kwargs)
        return wrapper
    return decorate


def authenticate() -> Caller:
    if rs.KEY_ID_HEADER in request.headers:
        return _terminal()
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthenticated("Send an Authorization: Bearer key, or a signed terminal request.",
                              "missing_credentials")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Authorization must be \"Bearer <key>\".")
    token = token.strip()
    rt = runtime()
    if token.startswith("op_"):
        if hmac.compare_digest(key_hash(token), key_hash(operator_key(rt))):
            return Caller("operator", "operator")
    elif token.startswith(("sk_", "wk_")):
        caller = _bearer(rt, token)
        if caller is not None:
            return caller
    raise unauthenticated("Invalid API key.")


def _bearer(rt, token: str) -> Caller | None:
    """The merchant or wallet a key belongs to, from the cache or one indexed read."""
    digest = key_hash(token)
    cached = rt.callers.get(digest)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    keep = CALLER_CACHE_SECONDS
    with rt.store.read() as tx:
        if token.startswith("sk_"):
            wall = int(rt.now().timestamp())
            key = merchants_db.merchant_key_by_hash(tx, digest, wall)
            caller = Caller("merchant", key["merchant_id"], key["merchant_id"]) if key else None
            if key and key["expires_at"] is not None:  # a rolled key is not remembered past its expiry
                keep = min(keep, key["expires_at"] - wall)
        else:
            wallet_id = wallets_db.wallet_id_by_credential(tx, digest)
            caller = Caller("wallet", wallet_id) if wallet_id else None
    if caller is not None:  # only known keys: random guesses must not fill the cache
        if len(rt.callers) >= CALLER_CACHE_SIZE:
            rt.callers.clear()
        rt.callers[digest] = (caller, now + keep)
    return caller


def forget_caller(rt, caller_id: str) -> None:
    """Drop every cached key of this merchant or wallet in this process (after a revocation)."""
    for digest, (caller, _) in list(rt.callers.items()):
        if caller.id == caller_id:
            rt.callers.pop(digest, None)


def terminal_refused(status: str) -> Forbidden:
    """A correctly signed request of a terminal that may not act: 403, saying why."""
    if status == "suspended":
        return Forbidden("terminal_suspended",
                         "This terminal is suspended; its requests are refused until it is resumed.")
    return Forbidden("terminal_revoked", "This terminal's key is revoked.")


def signed_path() -> str:
    """The path as the terminal signed it: path plus "?query" when there is one."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def _terminal() -> Caller:
    rt = runtime()
    h = request.headers
    key_id = h.get(rs.KEY_ID_HEADER, "")
    timestamp = rs.parse_timestamp(h.get(rs.TIMESTAMP_HEADER, ""))
    nonce = h.get(rs.NONCE_HEADER, "")
    signature = h.get(rs.SIGNATURE_HEADER, "")
    if timestamp is None or not rs.valid_nonce(nonce) or not signature:
        raise unauthenticated("A signed request needs key id, timestamp, nonce and signature headers.",
                              "malformed_signature")
    now = rt.now().timestamp()
    if not rs.within_window(timestamp, now):
        raise unauthenticated("The request's timestamp is outside the 300 s window.", "stale_timestamp")
    with rt.store.read() as tx:
        row = terminals_db.terminal_by_key_id(tx, key_id)
    # An unknown key id is checked against a throwaway secret so it costs the same time.
    secret = terminal_secret(rt, key_id if row else "unknown")
    body = request.get_data(cache=True)
    if not rs.verify(secret, request.method, signed_path(), timestamp, nonce, body, signature) or not row:
        raise unauthenticated("Invalid request signature.", "invalid_signature")
    if row["status"] != "active":  # read on every request: a suspension holds from the next one
        raise terminal_refused(row["status"])
    # Only a valid signature spends a nonce, so forged requests cannot burn a terminal's.
    # The table's primary key refuses a nonce seen before, on whichever node it was.
    def spend(tx) -> None:
        if not auth_db.spend_nonce(tx, key_id=key_id, nonce=nonce, seen_at=int(now)):
            raise unauthenticated("This request was already received (nonce reused).", "replayed_nonce")
        auth_db.forget_nonces_before(tx, before=int(now) - NONCE_RETENTION_SECONDS)
        rate_limits.count(tx, bucket="requests", caller_id=row["id"], limit=rt.config.rate_limit_per_minute,
                          now=int(now))

    rt.store.write(spend)  # on SQLite, one fsync shared with the other writes of the moment
    return Caller("terminal", row["id"], row["merchant_id"])
