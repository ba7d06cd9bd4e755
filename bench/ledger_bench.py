"""Ledger transfers per second through Store, against raw SQLite on the same disk.

Baseline: raw sqlite3 in WAL mode at the same synchronous level, one row
inserted per committed transaction (BEGIN IMMEDIATE; INSERT; COMMIT): the
floor any durable write pays. Measured: ledger.transfer() wallet -> merchant,
each in its own store.transaction() (a payment: the funds-checked debit, the
credit, the transfer row, two postings). Also balance() reads through
store.read(), and transfers through the store's group commit (Store.write)
from --threads threads at once (many transfers per fsync). Baseline and ledger
runs alternate in rounds so disk noise hits both. Prints ops/s, median and p99
per op, and the ratios.

    python bench/ledger_bench.py [--ops 2000] [--rounds 3] [--threads 8] [--synchronous FULL|NORMAL] [--dir DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core import ledger  # noqa: E402
from gateway.store import SQLiteStore  # noqa: E402

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def raw_inserts(path: Path, ops: int, synchronous: str) -> list[float]:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")
    start = conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    times = []
    for i in range(start, start + ops):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO rows (id, amount) VALUES (?, ?)", (f"row-{i}", i))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    conn.close()
    return times


def ledger_transfers(store: SQLiteStore, ops: int, offset: int) -> list[float]:
    times = []
    for i in range(offset, offset + ops):
        t0 = time.perf_counter()
        with store.transaction() as tx:
            ledger.transfer(tx, transfer_id=f"pay-{i}", debit_account_id="wallet", credit_account_id="shop",
                            amount=1 + i % 500, currency="CNY", code="payment", now=NOW)
        times.append(time.perf_counter() - t0)
    return times


def grouped_transfers(store: SQLiteStore, ops: int, offset: int, threads: int) -> list[float]:
    """`ops` transfers through Store.write from `threads` threads; the time each caller waited."""
    times: list[float] = []

    def pay(index: int) -> None:
        mine = []
        for i in range(offset + index, offset + ops, threads):
            t0 = time.perf_counter()
            store.write(lambda tx, i=i: ledger.transfer(
                tx, transfer_id=f"grp-{i}", debit_account_id="wallet", credit_account_id="shop",
                amount=1 + i % 500, currency="CNY", code="payment", now=NOW))
            mine.append(time.perf_counter() - t0)
        times.extend(mine)

    workers = [threading.Thread(target=pay, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # summary() takes ops/s as ops / sum(times): give it the wall time spread over the ops
    wall = time.perf_counter() - start
    return [wall / len(times)] * len(times), times


def balance_reads(store: SQLiteStore, ops: int) -> list[float]:
    times = []
    for _ in range(ops):
        t0 = time.perf_counter()
        with store.read() as tx:
            ledger.balance(tx, "wallet")
        times.append(time.perf_counter() - t0)
    return times


def summary(name: str, times: list[float]) -> tuple[float, str]:
    ordered = sorted(times)
    rate = len(times) / sum(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    line = (f"{name:<34} {rate:>9.0f} ops/s   median {statistics.median(times) * 1e3:7.3f} ms"
            f"   p99 {p99 * 1e3:7.3f} ms   ({len(times)} ops)")
    return rate, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per round and kind")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="threads sending group-commit transfers")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--dir", default=None, help="where the databases go (default: a temp dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ledger-bench-", dir=args.dir))
    try:
        store = SQLiteStore(work / "gateway.db", synchronous=args.synchronous)
        with store.transaction() as tx:
            ledger.open_account(tx, kind="funding_source", account_id="fund", now=NOW)
            ledger.open_account(tx, kind="customer_wallet", account_id="wallet", now=NOW)
            ledger.open_account(tx, kind="merchant", account_id="shop", now=NOW)
            ledger.transfer(tx, transfer_id="topup", debit_account_id="fund", credit_account_id="wallet",
                            amount=10**15, currency="CNY", code="topup", now=NOW)
        raw, transfers, reads, grouped, waits = [], [], [], [], []
        batches = store.batches
        for r in range(args.rounds):
            raw += raw_inserts(work / "raw.db", args.ops, args.synchronous)
            transfers += ledger_transfers(store, args.ops, r * args.ops)
            reads += balance_reads(store, args.ops)
            spread, waited = grouped_transfers(store, args.ops, r * args.ops, args.threads)
            grouped += spread
            waits += waited
        batches = store.batches - batches
        with store.read() as tx:
            report = ledger.check(tx)
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"synchronous={args.synchronous}, WAL, {args.rounds} rounds x {args.ops} ops, dir {work.parent}")
    raw_rate, line = summary("baseline: raw sqlite3 insert+commit", raw)
    print(line)
    rate, line = summary("ledger.transfer via Store", transfers)
    print(line)
    _, line = summary("ledger.balance via Store.read", reads)
    print(line)
    grouped_rate = len(grouped) / sum(grouped)
    ordered = sorted(waits)
    print(f"{f'ledger.transfer via Store.write x{args.threads}':<34} {grouped_rate:>9.0f} ops/s   median "
          f"{statistics.median(waits) * 1e3:7.3f} ms   p99 {ordered[int(len(ordered) * 0.99)] * 1e3:7.3f} ms"
          f"   ({len(waits)} ops, {len(waits) / max(1, batches):.1f} per commit)")
    print(f"ratio transfer/baseline: rate {rate / raw_rate:.2f}x, median latency"
          f" {statistics.median(transfers) / statistics.median(raw):.1f}x;"
          f" group-commit transfers/baseline: rate {grouped_rate / raw_rate:.2f}x")
    print(f"books after the run: {'ok' if report.ok else 'FAILED'}, {report.transfers} transfers")


if __name__ == "__main__":
    main()
