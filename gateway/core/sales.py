"""Sale ingestion: a till's batch of journalled sale records, each judged on its own.

A sale record (protocol.uplink.SaleRecord) is a card presented at a till to pay one of
its sales. `ingest` stores each record once per (terminal, record id), verifies the
receipt of a new paid purse sale and sends it to clearing (the purse fare's clearing:
gateway.core.clearing, one settlement per upload), and answers per record, as
POST /v1/taps does:

    {"id": ..., "status": "accepted" | "duplicate" | "rejected", "reason": ...,
     "flags": [...], "clearing": "posted" | "held" | <refusal> | null}

A rejected record is garbage and is not stored. `clock_suspect` flags a record whose
time is far from the gateway's (the rule of taps.check_row).

Tills uploaded sales as taps on route protocol.uplink.records.LEGACY_TILL_ROUTE before
this endpoint; /v1/taps still takes such rows, and hands them here as sales
(`from_legacy_taps`), so an old till keeps working and its sales are stored as sales.
"""
from __future__ import annotations

from datetime import datetime

from gateway.core import clearing, iso, taps, unix
from gateway.store import sales as sales_db
from protocol.uplink import RecordError, SaleRecord
from protocol.uplink.records import sale_from_legacy_tap

MAX_BATCH = taps.MAX_BATCH


def _flags(record: SaleRecord, now: int) -> tuple[str, ...]:
    suspect = record.at > now + taps.FUTURE_SKEW or record.at < max(taps.EPOCH_FLOOR, now - taps.MAX_AGE)
    return ("clock_suspect",) if suspect else ()


def ingest(tx, *, terminal_id: str, merchant_id: str, rows: list, now: datetime) -> dict:
    """Store and clear a batch of sale records in the open transaction; the per-record answer."""
    at_now = unix(now)
    results, new, first = taps.sort_upload(
        rows, SaleRecord.from_json, RecordError,
        lambda ids: sales_db.stored_sales(tx, terminal_id=terminal_id, record_ids=sorted(ids)),
        lambda r: _flags(r, at_now))

    status: dict[str, str | None] = {r.id: None for _, r in new}
    paid = [r for _, r in new if r.clears]
    if paid:
        keys = clearing.trusted_keys(tx)
        cache = clearing.VERIFIED.using(keys)
        certificates = clearing.issuer_certificates(tx, [r.card_id for r in paid])
        submitted = []
        for r in paid:
            receipt, refusal = clearing.check_receipt(r.receipt, card_id=r.card_id, amount=r.amount,
                                                      currency=r.currency,
                                                      certificate_hex=certificates.get(r.card_id), cache=cache)
            status[r.id] = refusal or "held"
            if receipt is not None:
                submitted.append(clearing.Submitted(receipt, r.receipt, terminal_id, r.id, merchant_id))
        if submitted:
            cleared = clearing.clear_upload(tx, submitted, now=now, settlement=clearing.settlement_id(
                terminal_id, [s.tap_id for s in submitted]))
            status.update({record_id: s for (_, record_id), s in cleared.items()})
    inserted = sales_db.insert_sales(tx, [
        {"terminal_id": terminal_id, "record_id": r.id, "sale_id": r.sale, "merchant_id": merchant_id, "at": r.at,
         "kind": r.kind, "accepted": int(r.accepted), "reason": r.reason, "amount": r.amount,
         "currency": r.currency, "card_id": r.card_id, "token": r.token, "flags": ",".join(_flags(r, at_now)),
         "clearing": status[r.id], "received_at": at_now} for _, r in new])
    taken = sales_db.stored_sales(tx, terminal_id=terminal_id,
                                  record_ids=sorted(r.id for _, r in new if r.id not in inserted))
    return taps.answer_upload("sale_batch", len(rows), results, new, first, taken, lambda r: taps.row_answer(
        r.id, "accepted", flags=_flags(r, at_now), clearing_status=status[r.id]))


def from_legacy_taps(tx, *, terminal_id: str, merchant_id: str, rows: list, now: datetime) -> list[dict]:
    """The per-row answers for tap rows on the legacy till route, stored as the sales they are."""
    return ingest(tx, terminal_id=terminal_id, merchant_id=merchant_id,
                  rows=[sale_from_legacy_tap(row) for row in rows], now=now)["results"]


def revenue(tx, *, since: int, until: int, merchant_id: str | None = None) -> dict:
    """Purse sales at tills in [since, until), per currency: accepted sales and what clearing posted."""
    rows = sales_db.revenue(tx, since=since, until=until, merchant_id=merchant_id)
    return {"object": "sale_revenue", "from": iso(since), "to": iso(until),
            "data": [{"currency": r["currency"], "sales": r["count"], "revenue": r["amount"] or 0} for r in rows]}
