"""Bill payments per second through the whole gateway, against a GET of a bill in the same run.

Starts the gateway under gunicorn (gthread workers) on 127.0.0.1 with a fresh data
directory (gateway_bench's server start), signs a biller up, issues enough bills through
POST /v1/bill-batches and funds some wallets, then drives POST /v1/bills/{id}/payments —
each request a different bill, its own Idempotency-Key — with wrk (one thread, pinned to
the last core) for a bounded time. The baseline, measured in the same run with the same
server and load settings, is GET /v1/bills/{id}: an authenticated read of the same rows
with no write. The two alternate for a few rounds, so a machine whose load changes
meanwhile weighs on both alike. Prints the median rate and p50/p90/p99 latency of each
over the rounds, and their ratio.

    python bench/bills_bench.py [--seconds 4] [--rounds 3] [--connections 8] [--workers 2] [--synchronous FULL]

The bar: >= 2,000 bill payments/s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gateway_bench import (SURVIVES, WRK_DONE, call, free_port, process_cpu_seconds, start_server,  # noqa: E402
                           wait_up, worker_pids)

from gateway.http.auth import operator_key  # noqa: E402
from gateway.config import Config  # noqa: E402

BAR_RATE = 2000
BATCH = 400  # bills a batch request: well under the gateway's 64 KiB body limit

WRK_SCRIPT = r"""
local counter = %(start)d
local bills = {%(bills)s}
local keys = {%(keys)s}
local method = '%(method)s'
local run = '%(run)s'
request = function()
  counter = counter + 1
  local bill = bills[((counter - 1) %% #bills) + 1]
  local headers = {["Authorization"] = "Bearer " .. keys[(counter %% #keys) + 1]}
  if method == "POST" then
    headers["Idempotency-Key"] = run .. "-" .. counter
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/v1/bills/" .. bill .. "/payments", headers, "{}")
  end
  return wrk.format("GET", "/v1/bills/" .. bill, headers)
end
""" + WRK_DONE


def seed(base: str, op: str, bills: int, wallets: int) -> tuple[list[str], list[str]]:
    """A biller with `bills` open bills, and `wallets` funded wallets; (bill ids, wallet keys)."""
    biller = call(base, "POST", "/v1/billers", op, {"name": "Bench Water", "city": "Hangzhou"}, "biller")
    ids = []
    for start in range(0, bills, BATCH):
        rows = [{"consumer_number": f"C{n:07d}", "period": "2026-11", "amount_due": 1_250, "currency": "CNY",
                 "due_date": "2099-12-31"} for n in range(start, min(start + BATCH, bills))]
        batch = call(base, "POST", "/v1/bill-batches", biller["api_key"], {"bills": rows}, f"batch-{start}")
        assert batch["rejected"] == 0, batch["errors"][:3]
        ids += [b["id"] for b in batch["bills"]]
    keys = []
    for i in range(wallets):
        customer = call(base, "POST", "/v1/customers", op, {"name": f"payer {i}"}, f"c{i}")
        wallet = call(base, "POST", "/v1/wallets", op, {"customer_id": customer["id"], "currency": "CNY"}, f"w{i}")
        call(base, "POST", "/v1/topups", op, {"wallet_id": wallet["id"], "amount": 9_000_000_000,
                                              "currency": "CNY"}, f"t{i}")
        keys.append(wallet["credential"])
    return ids, keys


def drive(base: str, home: Path, method: str, bills: list[str], keys: list[str], args, start: int = 0) -> dict:
    """One wrk run of args.seconds; POSTs pay bills[start:], one bill a request."""
    script = home / f"{method.lower()}.lua"
    script.write_text(WRK_SCRIPT % {"bills": ", ".join(f'"{b}"' for b in bills),
                                    "keys": ", ".join(f'"{k}"' for k in keys), "start": start,
                                    "method": method, "run": f"bench{os.getpid()}-{start}"})
    wrk = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "-s", str(script), base]
    cpus = os.cpu_count() or 1
    if cpus > 1 and shutil.which("taskset"):
        wrk = ["taskset", "-c", str(cpus - 1)] + wrk
    out = subprocess.run(wrk, capture_output=True, text=True, timeout=args.seconds + 60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["rate"] = (result["requests"] - result["non_2xx"]) / (result["duration_us"] / 1e6)
    return result


def median_of(runs: list[dict]) -> dict:
    """The median of each figure over the rounds, and the total counts."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50_us", "p90_us", "p99_us")}
    out.update({k: sum(r[k] for r in runs) for k in ("requests", "non_2xx", "socket_errors")})
    out["max_us"] = max(r["max_us"] for r in runs)
    out["rates"] = [r["rate"] for r in runs]
    return out


def line(name: str, r: dict) -> str:
    return (f"{name:<16}{r['rate']:>8,.0f} /s   p50 {r['p50_us'] / 1000:6.2f} ms   p90 {r['p90_us'] / 1000:6.2f} ms"
            f"   p99 {r['p99_us'] / 1000:6.2f} ms   max {r['max_us'] / 1000:7.2f} ms   (rounds: "
            + ", ".join(f"{rate:,.0f}" for rate in r["rates"])
            + f"; {r['requests'] - r['non_2xx']} ok, {r['non_2xx']} not 2xx, {r['socket_errors']} socket errors)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (baseline, payments), interleaved so a change of load hits both alike")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--wallets", type=int, default=16)
    parser.add_argument("--bills-per-second", type=int, default=2500,
                        help="bills issued per second of the run: more than can be paid, so none is paid twice")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian package wrk; `make setup` installs it)", file=sys.stderr)
        return 2

    home = Path(tempfile.mkdtemp(prefix="tapstack-bills-bench-"))
    config = Config(home / "gateway")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(home, port, args.workers, args.threads, args.synchronous)
    try:
        wait_up(base, server)
        bills, keys = seed(base, operator_key(config), args.bills_per_second * args.seconds * args.rounds,
                           args.wallets)
        gets, posts, start, cpu = [], [], 0, []
        workers = worker_pids(server.pid)
        for _ in range(args.rounds):
            gets.append(drive(base, home, "GET", bills, keys, args))
            before = process_cpu_seconds(workers)
            posts.append(drive(base, home, "POST", bills, keys, args, start))
            cpu.append((process_cpu_seconds(workers) - before) / max(1, posts[-1]["requests"]) * 1000)
            start += posts[-1]["requests"] + args.connections  # requests still in flight may land too
        baseline, paid = median_of(gets), median_of(posts)
        with sqlite3.connect(config.db_path) as db:
            # one statement, one snapshot: payments still in flight commit between two reads
            stored, paid_bills = db.execute("SELECT (SELECT COUNT(*) FROM bill_payments),"
                                            " (SELECT COUNT(*) FROM bill_bills WHERE status = 'paid')").fetchone()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)

    print(f"gateway: gunicorn gthread {args.workers} workers x {args.threads} threads on {os.cpu_count()} cores; "
          f"wrk 1 thread, {args.connections} connections; {args.rounds} rounds of {args.seconds} s each way; "
          f"{len(bills)} bills issued; medians over the rounds")
    print(line("bill payments", paid))
    print(line("baseline GET", baseline) + "  (GET /v1/bills/{id}, same server, same load)")
    print(f"stored:         {stored} bill payments, {paid_bills} bills paid (each paid once: "
          f"{'yes' if stored == paid_bills else 'NO'})")
    print(f"durability:     SQLite WAL, synchronous={args.synchronous}: survives {SURVIVES[args.synchronous]}")
    print(f"server CPU:     {statistics.median(cpu):.2f} ms per bill payment (median of rounds: "
          f"{', '.join(f'{c:.2f}' for c in cpu)})")
    print(f"ratio:          bill payments / baseline GET = {paid['rate'] / baseline['rate']:.3f}")
    print(f"bar:            >= {BAR_RATE} bill payments/s: {'met' if paid['rate'] >= BAR_RATE else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
