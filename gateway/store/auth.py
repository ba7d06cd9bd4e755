"""Signed-request nonces. Owns `terminal_nonces` (migration 0002); gateway/http/auth.py decides.

A nonce is spent once per terminal key through the table's primary key: of two
requests carrying one nonce, on one node or several, the second's insert finds
the first's row (waiting for it to commit) and inserts nothing.
"""
from __future__ import annotations


def spend_nonce(tx, *, key_id: str, nonce: str, seen_at: int) -> bool:
    """Record the nonce as seen; False when it was seen before."""
    return tx.one("INSERT INTO terminal_nonces (key_id, nonce, seen_at) VALUES (:k, :n, :t)"
                  " ON CONFLICT (key_id, nonce) DO NOTHING RETURNING nonce",
                  {"k": key_id, "n": nonce, "t": seen_at}) is not None


def forget_nonces_before(tx, *, before: int) -> int:
    """Drop the nonces seen before `before` (unix seconds); how many."""
    return tx.execute("DELETE FROM terminal_nonces WHERE seen_at < :t", {"t": before})
