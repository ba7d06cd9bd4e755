"""Till sale queries: the cards presented at shop tills to pay a sale.

Owns `till_sales` (migration 0019). gateway/services/sales.py decides; this module
only reads and writes rows. Money is minor units; times are unix seconds.

A sale record is stored once: (terminal_id, record_id) is the key and `insert_sales`
inserts with ON CONFLICT DO NOTHING RETURNING, so of one upload sent to two nodes at
once each record is new to exactly one of them.
"""
from __future__ import annotations

from gateway.store.taps import _insert_new, _query_in

SALE_COLUMNS = ("terminal_id", "record_id", "sale_id", "merchant_id", "at", "kind", "accepted", "reason",
                "amount", "currency", "card_id", "token", "flags", "clearing", "received_at")


def stored_sales(tx, *, terminal_id: str, record_ids: list[str]) -> dict[str, dict]:
    """The terminal's sale records already stored among record_ids: id -> {record_id, flags, clearing}."""
    return {row["record_id"]: row for row in _query_in(
        tx, "SELECT record_id, flags, clearing FROM till_sales WHERE terminal_id = :t AND record_id IN ({})",
        record_ids, t=terminal_id)}


def insert_sales(tx, rows: list[dict]) -> set[str]:
    """Store each sale record (a dict of SALE_COLUMNS, all of one terminal) not stored yet; the
    record ids this call stored."""
    return _insert_new(tx, "till_sales", SALE_COLUMNS, rows, unique="terminal_id, record_id", key="record_id")
