"""Till sale queries: the cards presented at shop tills to pay a sale.

Owns `till_sales` (migration 0019); reads the status of their receipts in `purse_receipts`.
gateway/core/sales.py decides; this module only reads and writes rows. Money is minor units; times are unix seconds.

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


def revenue(tx, *, since: int, until: int, merchant_id: str | None = None) -> list[dict]:
    """Accepted purse sales in [since, until) per currency (of one merchant's tills, when given):
    currency, count, and amount (what clearing has posted, by the sales' receipts in
    purse_receipts; None when nothing was)."""
    where, params = ["s.accepted = 1", "s.at >= :a", "s.at < :b", "s.currency IS NOT NULL"], {"a": since, "b": until}
    if merchant_id is not None:
        where.append("s.merchant_id = :m")
        params["m"] = merchant_id
    return tx.query("SELECT s.currency, COUNT(*) AS count,"
                    " SUM(CASE WHEN r.status = 'posted' THEN s.amount ELSE 0 END) AS amount FROM till_sales s"
                    " LEFT JOIN purse_receipts r ON r.card_id = s.card_id AND r.terminal_id = s.terminal_id"
                    f" AND r.tap_id = s.record_id WHERE {' AND '.join(where)}"
                    " GROUP BY s.currency ORDER BY s.currency", params)
