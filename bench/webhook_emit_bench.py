"""The cost of webhooks.emit inside a payment's transaction, against the per-endpoint form
it replaced, measured in the same run.

emit() writes the event and, in one INSERT ... SELECT, a delivery per enabled endpoint of
the merchant that asked for the event type. The baseline is the former shape, kept here
only to be measured: a key-sorted json.dumps, the event INSERT, a SELECT of the merchant's
endpoints, then one INSERT per matching endpoint. Each sample is the
timing of one emit call inside a write transaction (the writer lock is held, the commit's
fsync left out); the two alternate call by call on one store, so a changing machine
weighs on both alike. Prints the median and p90/p99 per
emit in microseconds for 0, 1, 3 (of 4, one not subscribed) and 10 endpoints, and the ratio.

    python bench/webhook_emit_bench.py [--samples 3000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.core import webhooks as wh  # noqa: E402
from gateway.core import iso, new_id, unix  # noqa: E402
from gateway.store import SQLiteStore  # noqa: E402

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
KEY = bytes(32)  # endpoints' secrets are sealed under it; emitting never opens them
DATA = {"id": "pay_0123456789abcdef01234567", "object": "payment", "wallet_id": "wal_0123456789abcdef01234567",
        "merchant_id": "mer_x", "amount": 1250, "amount_refunded": 0, "currency": "CNY",
        "status": "succeeded", "created_at": "2026-11-27T09:00:00Z"}


def former_emit(tx, *, merchant_id: str, event_type: str, data: dict, now) -> str:
    """The per-endpoint shape emit() had, for comparison only."""
    at = unix(now)
    event_id = new_id("evt")
    body = json.dumps({"id": event_id, "object": "event", "type": event_type, "created_at": iso(at),
                       "merchant_id": merchant_id, "data": data}, separators=(",", ":"), sort_keys=True)
    tx.execute("INSERT INTO webhook_events (id, merchant_id, type, body, created_at) "
               "VALUES (:id, :m, :type, :body, :at)",
               {"id": event_id, "m": merchant_id, "type": event_type, "body": body, "at": at})
    for endpoint in tx.query("SELECT id, event_types FROM webhook_endpoints "
                             "WHERE merchant_id = :m AND status = 'enabled'", {"m": merchant_id}):
        types = endpoint["event_types"].split()
        if wh.ALL_TYPES in types or event_type in types:
            tx.execute("INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, "
                       "next_attempt_at, created_at) VALUES (:id, :e, :ep, 'pending', 0, :at, :at)",
                       {"id": new_id("whd"), "e": event_id, "ep": endpoint["id"], "at": at})
    return event_id


def timed(tx, emit, merchant: str) -> float:
    start = time.perf_counter()
    emit(tx, merchant_id=merchant, event_type="payment.succeeded", data=DATA, now=NOW)
    return (time.perf_counter() - start) * 1e6


def run(store: SQLiteStore, merchant: str, samples: int, batch: int = 100) -> tuple[list[float], list[float]]:
    """Per-emit times of both forms, alternating, inside write transactions of `batch` pairs
    (what emit costs a payment while the writer lock is held, without the commit's fsync)."""
    new: list[float] = []
    old: list[float] = []

    def job(tx) -> None:
        for _ in range(batch):
            new.append(timed(tx, wh.emit, merchant))
            old.append(timed(tx, former_emit, merchant))

    for _ in range(max(1, samples // batch)):
        store.write(job)
    return new, old


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "gateway.db")
        try:
            setups = {0: "mer_none", 1: "mer_one", 3: "mer_three", 10: "mer_ten"}
            with store.transaction() as tx:
                wh.create_endpoint(tx, merchant_id="mer_one", url="https://example.com/a", event_types=None, now=NOW,
                                   seal_key=KEY)
                for types in (None, ["payment.succeeded"], ["refund.succeeded"], ["payment.succeeded"]):
                    wh.create_endpoint(tx, merchant_id="mer_three", url="https://example.com/b",
                                       event_types=types, now=NOW, seal_key=KEY)
                for _ in range(10):
                    wh.create_endpoint(tx, merchant_id="mer_ten", url="https://example.com/c", event_types=None,
                                       now=NOW, seal_key=KEY)
            print(f"{'endpoints':>9} {'form':<13} {'median us':>10} {'p90':>8} {'p99':>8}")
            for count, merchant in setups.items():
                new, old = run(store, merchant, args.samples)
                for name, values in (("INSERT-SELECT", new), ("per-endpoint", old)):
                    print(f"{count:>9} {name:<13} {statistics.median(values):>10.1f} "
                          f"{pct(values, 90):>8.1f} {pct(values, 99):>8.1f}")
                print(f"{'':>9} ratio (new/old median) {statistics.median(new) / statistics.median(old):.2f}")
        finally:
            store.close()


if __name__ == "__main__":
    main()
