"""PostgreSQL statement binding: what a payment costs in the gateway's process and in
PostgreSQL's, bound on the client against bound on the server with prepared statements.

Client-side binding (psycopg's ClientCursor) sends each statement as text with its values
quoted in: PostgreSQL parses and plans every one anew. Server-side binding with statements
prepared at their first run on a connection (what gateway/store/postgres.py does) sends the
statement's name and its values; the parse and plan are kept per connection.

Two gateway apps in this process on one PostgreSQL database of the bench's own (fsync on,
synchronous_commit on), one per binding, drive POST /v1/payments through Flask's test
client from one thread, in alternating blocks. Per block: payments/s, the gateway process's
CPU per payment and PostgreSQL's (its server processes', from /proc); medians of blocks.
Baseline, same run: one committed single-row INSERT per transaction on a prepared
statement, from the same thread.

    python bench/pg_binding_bench.py [--payments 300] [--blocks 3]
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gateway_bench import process_cpu_seconds, worker_pids  # noqa: E402

MODES = {"client-side binding (ClientCursor)": ("ClientCursor", None),
         "server-side binding, prepared": ("Cursor", 0)}


def make_app(url: str, home: Path, cursor: str, threshold: int | None):
    """A gateway app whose store's pool binds as asked (the pool is made here, at once)."""
    import psycopg

    from gateway.http.app import create_app
    from gateway.config import Config
    from gateway.store import postgres

    postgres.CURSOR, postgres.PREPARE_THRESHOLD = getattr(psycopg, cursor), threshold
    config = Config(home, database_url=url)
    store = postgres.PostgresStore(url)
    with store.read() as tx:  # makes the pool with the settings above
        tx.one("SELECT 1 AS one")
    return create_app(config, store=store)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=300, help="payments per block")
    parser.add_argument("--blocks", type=int, default=3, help="blocks per binding, alternating")
    args = parser.parse_args()

    import psycopg

    from gateway.http.auth import operator_key
    from gateway.store import postgres
    from tapstack.postgres import LocalPostgres

    os.environ.setdefault("TAPSTACK_MASTER_KEY", "5e" * 32)
    home = Path(tempfile.mkdtemp(prefix="tapstack-pgbind-"))
    cluster = LocalPostgres(settings={"fsync": "on", "synchronous_commit": "on",
                                                   "shared_buffers": "128MB"}).start()
    default = (postgres.CURSOR, postgres.PREPARE_THRESHOLD)
    try:
        url = cluster.create_database("bench")
        postgres.PostgresStore(url, migrate=True).close()
        apps = {label: make_app(url, home / f"gw{i}", *mode) for i, (label, mode) in enumerate(MODES.items())}
        postgres.CURSOR, postgres.PREPARE_THRESHOLD = default
        n = itertools.count()

        def post(client, path, body, key):
            r = client.post(path, json=body, headers={"Authorization": f"Bearer {key}",
                                                      "Idempotency-Key": f"k{next(n)}"})
            assert r.status_code in (200, 201), r.get_json()
            return r.get_json()

        first = next(iter(apps.values()))
        client = first.test_client()
        op = operator_key(first.extensions["tapstack"])
        merchant = post(client, "/v1/merchants", {"name": "Bench Shop", "currency": "CNY"}, op)
        body = {"merchant_id": merchant["id"], "amount": 1250, "currency": "CNY"}
        payers = {}
        for label, app in apps.items():
            customer = post(client, "/v1/customers", {"name": label[:20]}, op)
            wallet = post(client, "/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"}, op)
            post(client, "/v1/topups", {"wallet_id": wallet["id"], "amount": 9_000_000_000, "currency": "CNY"}, op)
            payers[label] = (app.test_client(), wallet["credential"])
            for _ in range(30):  # warm: connections made, statements prepared
                post(payers[label][0], "/v1/payments", body, wallet["credential"])

        def server_cpu() -> float:
            return process_cpu_seconds(worker_pids(cluster.pid))

        results = {label: [] for label in apps}
        for _ in range(args.blocks):
            for label, (payer, key) in payers.items():
                wall, cpu, pg_cpu = time.perf_counter(), time.process_time(), server_cpu()
                for _ in range(args.payments):
                    post(payer, "/v1/payments", body, key)
                results[label].append({"rate": args.payments / (time.perf_counter() - wall),
                                       "cpu": (time.process_time() - cpu) / args.payments * 1000,
                                       "pg": (server_cpu() - pg_cpu) / args.payments * 1000})

        with psycopg.connect(url, autocommit=True) as conn:  # the baseline: prepared single-row commits
            conn.execute("CREATE TABLE bench_rows (id TEXT PRIMARY KEY, amount BIGINT NOT NULL)")
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < 2:
                conn.execute("INSERT INTO bench_rows VALUES (%s, %s)", (f"r{count}", 1250), prepare=True)
                count += 1
            baseline = count / (time.perf_counter() - started)
    finally:
        postgres.CURSOR, postgres.PREPARE_THRESHOLD = default
        cluster.cleanup()
        shutil.rmtree(home, ignore_errors=True)

    load = os.getloadavg()
    print(f"machine:   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; one thread, in process, "
          f"{args.blocks} alternating blocks of {args.payments} payments per binding")
    medians = {}
    for label, blocks in results.items():
        medians[label] = {k: statistics.median(b[k] for b in blocks) for k in ("rate", "cpu", "pg")}
        m = medians[label]
        print(f"{label:<38} {m['rate']:6.0f} payments/s  gateway CPU {m['cpu']:.2f} ms  PostgreSQL CPU "
              f"{m['pg']:.2f} ms per payment  (blocks: "
              + ", ".join(f"{b['rate']:.0f}/s {b['cpu']:.2f}+{b['pg']:.2f} ms" for b in blocks) + ")")
    print(f"baseline:  one committed single-row INSERT per transaction, prepared: {baseline:,.0f}/s")
    client_side, server_side = medians.values()
    print(f"ratios:    server-side / client-side: payments/s {server_side['rate'] / client_side['rate']:.2f}, "
          f"gateway CPU {server_side['cpu'] / client_side['cpu']:.2f}, "
          f"PostgreSQL CPU {server_side['pg'] / client_side['pg']:.2f}; "
          f"client-side payments / baseline {client_side['rate'] / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
