"""Idempotency-Key records: one row per (caller, key), holding the request's
fingerprint and its sealed first answer.

Owns `idempotency_keys` (migrations 0002, 0007). gateway/http/idempotency.py decides.

A key is claimed before its request runs: `claim_key` inserts the row with no
answer yet (status 0) under the primary key. A second request with the key,
on any node, waits on that insert until the first commits (then finds its
answer) or rolls back (then claims the key itself); `record_answer` fills
the row in the same transaction as the effect, so no one else ever sees it
without its answer.
"""
from __future__ import annotations


def claim_key(tx, *, caller_kind: str, caller_id: str, key: str, method: str, path: str, request_hash: str,
              created_at: int) -> bool:
    """Claim the key for this request; False when it is already someone's (see key_record)."""
    return tx.one(
        "INSERT INTO idempotency_keys"
        " (caller_kind, caller_id, idem_key, method, path, request_hash, status, response, created_at)"
        " VALUES (:kind, :id, :key, :method, :path, :hash, 0, '', :at)"
        " ON CONFLICT (caller_kind, caller_id, idem_key) DO NOTHING RETURNING idem_key",
        {"kind": caller_kind, "id": caller_id, "key": key, "method": method, "path": path,
         "hash": request_hash, "at": created_at}) is not None


def key_record(tx, *, caller_kind: str, caller_id: str, key: str) -> dict | None:
    """request_hash, status and response stored for the key (status 0: no answer yet)."""
    return tx.one(
        "SELECT request_hash, status, response FROM idempotency_keys"
        " WHERE caller_kind = :kind AND caller_id = :id AND idem_key = :key",
        {"kind": caller_kind, "id": caller_id, "key": key})


def record_answer(tx, *, caller_kind: str, caller_id: str, key: str, status: int, response: str) -> None:
    """Write the answer into the row this transaction claimed."""
    tx.execute(
        "UPDATE idempotency_keys SET status = :status, response = :response"
        " WHERE caller_kind = :kind AND caller_id = :id AND idem_key = :key",
        {"kind": caller_kind, "id": caller_id, "key": key, "status": status, "response": response})


def delete_keys_before(tx, *, before: int) -> int:
    """Forget the records made before `before` (unix seconds); how many."""
    return tx.execute("DELETE FROM idempotency_keys WHERE created_at < :t", {"t": before})
