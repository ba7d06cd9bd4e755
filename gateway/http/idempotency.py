"""Idempotency-Key: a retried POST does its work once and gets the first answer again.

    @bp.post("/v1/payments")
    @requires("wallet")
    @idempotent
    def create_payment(tx): ... return 201, payment

The view runs as one job of `Store.write` and returns (status, resource). The job
first claims the key: it inserts the key's row, without an answer, under the
table's primary key (INSERT ... ON CONFLICT DO NOTHING). Only a request that
claimed the key runs the view; the answer is written into the claimed row in the
same transaction, so the effect and the record commit together or not at all,
and the client gets its answer only after that commit. Rules, per (caller, key):

- same method, path and body bytes: the stored status and body are replayed byte
  for byte (with an `Idempotent-Replayed: true` header);
- anything different: 409 idempotency_error;
- an error (any refusal of the core or ApiError: a 4xx, 402 insufficient funds) rolls
  back the claim with everything else, so the caller may fix the cause and retry
  with the key;
- concurrent requests with one key, on one node or several: the claim is the
  primary key's, not the gateway's. On PostgreSQL the second request's claim
  waits on the first one's row until that transaction ends: committed, the second
  finds the answer and replays it (or answers 409 if its request differs); rolled
  back, the second claims the key and runs. On SQLite writes take turns, so the
  second finds the first's committed row. The view never runs twice for one key.

Keys are 1 to 255 printable ASCII characters; every POST must send one.

Some first answers carry a secret shown once (a wallet credential, a merchant's API
key, a terminal's secret). So that the database never holds one, the stored answer
is sealed with AES-256-GCM under config.secret("idempotency_seal"), bound to its
(caller, key) row; a replay opens it and answers the same bytes.
"""
from __future__ import annotations

import functools
import hashlib

from flask import Response, current_app, request

from gateway.core import sealing
from gateway.core.caller import Caller
from gateway.core.errors import Invalid
from gateway.http import rate_limits
from gateway.http.auth import current_caller
from gateway.http.errors import ApiError
from gateway.http.runtime import runtime
from gateway.store import idempotency as idem_db

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What "the same request" means: method, path and the exact body bytes."""
    h = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def claim(tx, caller: Caller, key: str, *, method: str, path: str, request_hash: str,
          now_unix: int, reused_message: str = "This Idempotency-Key was used for a different request.") -> dict | None:
    """Claim the key for this request: None when this transaction now holds it (run the
    request, then record() its answer). Otherwise the key's record (request_hash, status,
    response) of the same request, to replay; 409 when the key was used for another."""
    if idem_db.claim_key(tx, caller_kind=caller.kind, caller_id=caller.id, key=key, method=method, path=path,
                         request_hash=request_hash, created_at=now_unix):
        return None
    prior = idem_db.key_record(tx, caller_kind=caller.kind, caller_id=caller.id, key=key)
    if prior["request_hash"] != request_hash:
        raise ApiError(409, "idempotency_error", "idempotency_key_reused", reused_message, HEADER)
    if prior["status"] == 0:  # claimed and not answered: cannot be seen outside its transaction
        raise RuntimeError("an idempotency key was found claimed without its answer")
    return prior


def record(tx, caller: Caller, key: str, *, status: int, response: str) -> None:
    """The claimed key's answer (sealed), written in the transaction that claimed it."""
    idem_db.record_answer(tx, caller_kind=caller.kind, caller_id=caller.id, key=key, status=status,
                          response=response)


def _context(caller: Caller, key: str) -> str:
    return f"{caller.kind}\n{caller.id}\n{key}"


def seal(secret: bytes, caller: Caller, key: str, text: str) -> str:
    return sealing.seal(secret, text, _context(caller, key))


def unseal(secret: bytes, caller: Caller, key: str, stored: str) -> str:
    """The answer sealed for this row; RuntimeError when it was not (tampering or a lost secret)."""
    try:
        return sealing.unseal(secret, stored, _context(caller, key))
    except sealing.SealError as e:
        raise RuntimeError("an idempotency record does not open with this gateway's seal") from e


def prune(tx, *, before_unix: int) -> int:
    """Forget records older than `before_unix` (a retry after that is a new request)."""
    return idem_db.delete_keys_before(tx, before=before_unix)


def request_key() -> str:
    key = request.headers.get(HEADER)
    if key is None or key == "":
        raise Invalid("idempotency_key_required", "Every POST needs an Idempotency-Key header.", HEADER)
    if len(key) > MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise Invalid("invalid_idempotency_key",
                      f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.", HEADER)
    return key


def _response(text: str, status: int, key: str, replayed: bool) -> Response:
    headers = {HEADER: key}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(text, status=status, mimetype="application/json", headers=headers)


def idempotent(view):
    """Run `view(tx, ...)` at most once per Idempotency-Key; see the module docstring."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        caller = current_caller()
        key = request_key()
        method, path = request.method, request.path
        request_hash = fingerprint(method, path, request.get_data(cache=True))
        rt = runtime()
        sealing_key = rt.secret("idempotency_seal")
        dumps = current_app.json.dumps

        def once(tx) -> tuple[str, int, bool]:
            # A job of store.write, in this request's context; run again whole if the
            # database rolled it back (a deadlock), so it touches nothing but tx.
            now_unix = int(rt.now().timestamp())
            rate_limits.count_bearer(tx, rt, caller, now_unix)  # in this write: no round trip of its own
            prior = claim(tx, caller, key, method=method, path=path, request_hash=request_hash,
                          now_unix=now_unix)
            if prior is not None:
                return unseal(sealing_key, caller, key, prior["response"]), prior["status"], True
            status, resource = view(tx, *args, **kwargs)
            text = dumps(resource)
            record(tx, caller, key, status=status, response=seal(sealing_key, caller, key, text))
            return text, status, False

        # The answer goes out only after the transaction holding this request committed.
        text, status, replayed = rt.store.write(once)
        return _response(text, status, key, replayed=replayed)
    wrapper.counts_rate_limit = True  # gateway.http.auth.requires leaves the count to it
    return wrapper
