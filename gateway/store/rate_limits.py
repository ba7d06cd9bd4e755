"""Rate-limit counters. Owns `rate_limit_windows` (migration 0018); gateway/http/rate_limits.py decides.

A hit is one upsert that returns the window's count: of two requests at once, on one node
or several, each gets its own count (the row's lock orders them), so no limit is passed.
"""
from __future__ import annotations


def hit(tx, *, bucket: str, window_start: int) -> int:
    """Count one hit of bucket in the window starting at window_start; the window's hits so far."""
    return tx.one("INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES (:b, :w, 1)"
                  " ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1"
                  " RETURNING hits", {"b": bucket, "w": window_start})["hits"]


def forget_before(tx, *, bucket: str, window_start: int) -> int:
    """Drop the bucket's windows older than window_start; how many."""
    return tx.execute("DELETE FROM rate_limit_windows WHERE bucket = :b AND window_start < :w",
                      {"b": bucket, "w": window_start})
