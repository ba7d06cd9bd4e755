"""What rate limiting costs per request, on SQLite and PostgreSQL, in process.

A merchant's or wallet's request is counted by one upsert in the database
(gateway/rate_limits.py): in the write an idempotent POST makes anyway (a payment), or
in a write of its own (a GET). This drives both kinds through the Flask app (no HTTP,
so the difference is not drowned) with rate limiting off (rate_limit_per_minute 0, the
baseline) and on (a limit never reached), interleaved round by round on one store, and
prints median and p90 per request, the difference and the ratio, with the load average
at the start. SQLite runs at synchronous FULL, as `gateway serve` does; PostgreSQL is a
durable cluster of the bench's own (fsync on, synchronous_commit on).

    python bench/rate_limit_bench.py [--samples 300] [--rounds 3] [--no-postgres]
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.http.app import create_app  # noqa: E402
from gateway.http.auth import operator_key  # noqa: E402
from gateway.config import Config  # noqa: E402

ON = 10 ** 9  # counted, never reached
_keys = itertools.count()


def post(client, path, key, body):
    return client.post(path, json=body, headers={"Authorization": f"Bearer {key}",
                                                 "Idempotency-Key": f"b{os.getpid()}-{next(_keys)}"})


def seed(client, op: str) -> tuple[str, str, str]:
    customer = post(client, "/v1/customers", op, {"name": "Bench"}).get_json()
    wallet = post(client, "/v1/wallets", op, {"customer_id": customer["id"], "currency": "CNY"}).get_json()
    post(client, "/v1/topups", op, {"wallet_id": wallet["id"], "amount": 10_000_000_000, "currency": "CNY"})
    merchant = post(client, "/v1/merchants", op, {"name": "Bench Shop"}).get_json()
    return wallet["id"], wallet["secret"], merchant["id"]


def timed(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        status = fn()
        out.append((time.perf_counter() - started) * 1e6)
        assert status in (200, 201), status
    return out


def run(name: str, config: Config, store, samples: int, rounds: int) -> None:
    app = create_app(config, store=store)
    client = app.test_client()
    wallet_id, key, merchant_id = seed(client, operator_key(config))
    cases = {
        "GET /v1/wallets/{id} (a write of its own)":
            lambda: client.get(f"/v1/wallets/{wallet_id}", headers={"Authorization": f"Bearer {key}"}).status_code,
        "POST /v1/payments (in the payment's write)":
            lambda: post(client, "/v1/payments", key, {"merchant_id": merchant_id, "amount": 1,
                                                       "currency": "CNY"}).status_code,
    }
    times = {(case, limit): [] for case in cases for limit in (0, ON)}
    for _ in range(rounds):
        for case, fn in cases.items():
            for limit in (0, ON):
                config.rate_limit_per_minute = limit
                timed(fn, 20)  # warm
                times[case, limit] += timed(fn, samples)
    print(f"\n{name}: {rounds} rounds x {samples} requests per case, interleaved")
    print(f"{'request':<46} {'off med':>9} {'on med':>9} {'diff':>8} {'ratio':>6} {'off p90':>9} {'on p90':>9}  (us)")
    for case in cases:
        off, on = times[case, 0], times[case, ON]
        m_off, m_on = statistics.median(off), statistics.median(on)
        q = lambda xs: statistics.quantiles(xs, n=10)[-1]  # noqa: E731
        print(f"{case:<46} {m_off:>9.0f} {m_on:>9.0f} {m_on - m_off:>+8.0f} {m_on / m_off:>6.2f} "
              f"{q(off):>9.0f} {q(on):>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(Path(tmp) / "sqlite")
        store = config.open_store()
        try:
            run("SQLite (synchronous FULL)", config, store, args.samples, args.rounds)
        finally:
            store.close()
        if args.no_postgres:
            return
        from tapstack.postgres import LocalPostgres
        cluster = LocalPostgres(settings={"fsync": "on", "synchronous_commit": "on"}).start()
        try:
            config = Config(Path(tmp) / "pg", database_url=cluster.create_database("bench_rate_limits"))
            store = config.open_store()
            store.migrate()
            try:
                run("PostgreSQL (one node, durable)", config, store, args.samples, args.rounds)
            finally:
                store.close()
                config.close()
        finally:
            cluster.cleanup()


if __name__ == "__main__":
    main()
