"""Payments per second through the whole gateway, against raw SQLite on the same disk.

Starts the gateway under gunicorn (gthread workers, as `tapstack gateway serve` runs it)
on 127.0.0.1 with a fresh data directory, seeds funded wallets and a merchant through
the API, then drives POST /v1/payments, each with its own Idempotency-Key, with wrk
(one thread, pinned to the last core) for a bounded time, in several rounds (the
machine is shared and its disk is erratic: each round is printed). Prints payments/s,
p50/p90/p99 latency, the server's CPU per payment, the store's SQLite synchronous level
and what it survives, and two baselines measured in the same run at that level in WAL:

- raw SQLite, one committed row per transaction: the floor any durable write pays
  when each commit has its own fsync;
- raw rows through the store's group commit (Store.write, one row per job, as many
  threads as wrk has connections): what batching commits buys on this disk.

    python bench/gateway_bench.py [--seconds 10] [--rounds 3] [--connections 8] [--workers 2] [--webhook]
    python bench/gateway_bench.py --profile 500     # in process: a payment's SQL statements and Python
    python bench/gateway_bench.py --database auto   # also PostgreSQL: one node, then two nodes

With --database (a postgresql:// URL of an empty database the bench may fill, or
"auto" for a durable cluster of its own in a temporary directory), the same run
then drives `tapstack gateway serve --database` on PostgreSQL: one node with
--workers workers, then two nodes with half the workers each (the same processes
on the same cores, so the difference is what two nodes cost: cross-node row locks,
no shared cache), wrk split across the two. A third baseline is raw PostgreSQL: one
committed single-row INSERT per transaction from --connections threads (psycopg,
synchronous_commit on). Bars: PostgreSQL one node >= 50% of SQLite's payments/s,
two nodes >= 90% of one node, p99 <= 50 ms, every payment durable.

The ceiling (unless --no-ceiling): in every round, after the payments, the same wrk drives
requests that stop short of a payment (CEILING: a plain WSGI function and a bare Flask
route under a second gunicorn of the same configuration; a route of the gateway app doing
nothing; one doing only a POST's framing), printed beside the payments with ratios, and a
payment's server CPU split by layer. On PostgreSQL the bench also prints what the gateway's
sessions wait on (pg_stat_activity, sampled every 20 ms during the rounds).

The bar: >= 2,500 payments/s with p99 <= 20 ms and <= 0.5 ms of server CPU per payment
(in at least 2 of 3 rounds) on a 2-core machine.
BENCH_APP=module:factory() serves another app factory (an instrumented one) instead.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.http.auth import operator_key  # noqa: E402
from gateway.config import Config  # noqa: E402

BAR_RATE, BAR_P99_MS, BAR_CPU_MS = 2500, 20.0, 0.5
SURVIVES = {"FULL": "a crash of the process, the OS or the power: every answered payment is on disk",
            "NORMAL": "a crash of the process; power loss may undo the last commits (never corrupts)",
            "EXTRA": "as FULL, and the directory entry too"}

# wrk prints its figures as one JSON line (a %-template: "%%d" stays "%d").
WRK_DONE = r"""done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "non_2xx": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""

WRK_SCRIPT = r"""
local counter = 0
local keys = {%(keys)s}
local body = '%(body)s'
local run = '%(run)s'
request = function()
  counter = counter + 1
  local key = keys[(counter %% #keys) + 1]
  return wrk.format("POST", "%(path)s", {
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = run .. "-" .. counter,
    ["Content-Type"] = "application/json"}, body)
end
""" + WRK_DONE


def make_app():
    """gunicorn's app factory: the gateway with its store at --synchronous (BENCH_SYNCHRONOUS),
    and the ceiling's two routes (CEILING)."""
    from gateway.http.app import create_app
    from gateway.config import load
    from gateway.store import SQLiteStore
    config = load()
    app = create_app(config, store=SQLiteStore(config.db_path, synchronous=os.environ["BENCH_SYNCHRONOUS"]))
    app.register_blueprint(ceiling_routes())
    return app


def ceiling_routes():
    """Two routes of the gateway app that stop short of a payment: one that does nothing
    (Flask and the gateway's app-wide hooks), one that does a POST's framing and nothing
    else (bearer key, body parsed and checked, rate-limit count, Idempotency-Key claimed
    and its answer sealed and recorded, in one write)."""
    from flask import Blueprint, Response

    from gateway.http import api
    from gateway.http.auth import requires
    from gateway.http.idempotency import idempotent

    bp = Blueprint("bench_ceiling", __name__)

    @bp.post("/v1/bench/nothing")
    def nothing():
        return Response(b"{}", 200, mimetype="application/json")

    @bp.post("/v1/bench/framing")
    @requires("wallet")
    @idempotent
    def framing(tx):
        api.json_body(required=("merchant_id", "amount", "currency"), optional=("description",))
        return 201, {"object": "nothing"}

    return bp


def make_bare_app():
    """gunicorn's app factory for the ceiling's bare levels: /wsgi is a plain WSGI function
    (gunicorn alone), anything else a Flask app of one route answering {} (gunicorn + Flask)."""
    from flask import Flask, Response
    flask_app = Flask("bare")

    @flask_app.post("/flask")
    def bare():
        return Response(b"{}", 200, mimetype="application/json")

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/wsgi":
            environ["wsgi.input"].read()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"{}"]
        return flask_app(environ, start_response)
    return app


# The ceiling's levels: (label, server, path); each is run in every round after the payments.
CEILING = (("the server, a plain WSGI function", "bare", "/wsgi"),
           ("the server + a bare Flask app, one route", "bare", "/flask"),
           ("gateway app, a route doing nothing", "gateway", "/v1/bench/nothing"),
           ("gateway app, a POST's framing only", "gateway", "/v1/bench/framing"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, key: str, body: dict | None = None, idem: str | None = None):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idem:
        headers["Idempotency-Key"] = idem
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data, headers, method=method), timeout=10) as r:
        return json.loads(r.read())


def wait_up(base: str, proc: subprocess.Popen, seconds: float = 20, path: str = "/v1/issuer/keys") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(base + path, data=b"" if path == "/wsgi" else None, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not answer in time")


def seed(base: str, op: str, wallets: int, webhook: bool) -> tuple[str, list[str]]:
    merchant = call(base, "POST", "/v1/merchants", op, {"name": "Bench Shop", "currency": "CNY"}, "m")
    if webhook:  # an endpoint nobody answers: each payment also writes its event and delivery
        call(base, "POST", "/v1/webhook_endpoints", merchant["api_key"],
             {"url": "https://hooks.example/bench"}, "we")
    keys = []
    for i in range(wallets):
        customer = call(base, "POST", "/v1/customers", op, {"name": f"payer {i}"}, f"c{i}")
        wallet = call(base, "POST", "/v1/wallets", op, {"customer_id": customer["id"], "currency": "CNY"}, f"w{i}")
        call(base, "POST", "/v1/topups", op, {"wallet_id": wallet["id"], "amount": 9_000_000_000,
                                              "currency": "CNY"}, f"t{i}")
        keys.append(wallet["credential"])
    return merchant["id"], keys


def sqlite_baseline(directory: Path, synchronous: str, seconds: float) -> float:
    """Committed single-row transactions per second, WAL, at the given synchronous level."""
    path = directory / "baseline.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, amount BIGINT NOT NULL, created_at BIGINT NOT NULL)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (:id, :a, :c)", {"id": f"row_{n:012d}", "a": 1250, "c": n})
        conn.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def group_commit_baseline(directory: Path, synchronous: str, seconds: float, threads: int) -> tuple[float, float]:
    """Rows per second, one row per Store.write job from `threads` threads; and rows per commit."""
    from gateway.store import SQLiteStore
    path = directory / "baseline-gc.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    empty = directory / "no-migrations"
    empty.mkdir(exist_ok=True)
    store = SQLiteStore(path, synchronous=synchronous, migrations_dir=empty)
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (id TEXT PRIMARY KEY, amount BIGINT NOT NULL, created_at BIGINT NOT NULL)")
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def insert_rows(index: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            store.write(lambda tx: tx.insert("t", {"id": f"row_{index}_{n:012d}", "amount": 1250, "created_at": n}))
            n += 1
        counts[index] = n

    batches_before, start = store.batches, time.perf_counter()
    workers = [threading.Thread(target=insert_rows, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    rows, batches = sum(counts), store.batches - batches_before
    store.close()
    return rows / elapsed, rows / max(1, batches)


def postgres_baseline(url: str, seconds: float, threads: int) -> float:
    """Committed single-row INSERTs per second on PostgreSQL, one connection per thread."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_rows")
        conn.execute("CREATE TABLE bench_rows (id TEXT PRIMARY KEY, amount BIGINT NOT NULL, created_at BIGINT NOT NULL)")
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def insert_rows(index: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            n = 0
            while time.perf_counter() < stop:
                conn.execute("INSERT INTO bench_rows VALUES (%s, %s, %s)", (f"row_{index}_{n:012d}", 1250, n))
                n += 1
            counts[index] = n

    start = time.perf_counter()
    workers = [threading.Thread(target=insert_rows, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def start_node(url: str, data_dir: Path, port: int, workers: int, threads: int, env: dict) -> subprocess.Popen:
    """`tapstack gateway serve --database url` (gunicorn in its own session); wait_up before use."""
    return subprocess.Popen(
        [sys.executable, "-m", "tapstack", "gateway", "serve", "--database", url, "--data", str(data_dir),
         "--port", str(port), "--workers", str(workers), "--threads", str(threads)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def run_split_round(scripts: list[Path], bases: list[str], args, cpus: int, workers: list[int]) -> dict:
    """One round with a wrk per node, started together; rates add, the worst p99 is the round's."""
    each = argparse.Namespace(**{**vars(args), "connections": max(1, args.connections // len(bases))})
    results: list[dict] = [{} for _ in bases]

    def one(i: int) -> None:
        results[i] = run_round(scripts[i], bases[i], each, cpus, [])

    cpu_before = process_cpu_seconds(workers)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sum(r["ok"] for r in results)
    return {"ok": ok, "rate": sum(r["rate"] for r in results), "non_2xx": sum(r["non_2xx"] for r in results),
            "socket_errors": sum(r["socket_errors"] for r in results),
            **{k: max(r[k] for r in results) for k in ("p50_us", "p90_us", "p99_us", "max_us")},
            "cpu_ms": (process_cpu_seconds(workers) - cpu_before) / max(1, ok) * 1000}


def sample_waits(url: str, stop: threading.Event, rounds: list) -> None:
    """What the gateway's busy sessions are doing, sampled from pg_stat_activity every 20 ms
    while the rounds run; the shares go into rounds[0]["waits"]."""
    import collections

    import psycopg
    seen: collections.Counter = collections.Counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.02):
            for kind, event in conn.execute(
                    "SELECT wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE application_name = 'tapstack-gateway' AND state = 'active'").fetchall():
                seen[f"{kind}:{event}" if kind else "running (CPU or a round trip)"] += 1
    total = sum(seen.values()) or 1
    if rounds:
        rounds[0]["waits"] = [(what, n / total) for what, n in seen.most_common(5)]


def postgres_rounds(url: str, home: Path, nodes: int, args, cpus: int, run: str) -> tuple[list[dict], int]:
    """The payment rounds on PostgreSQL through `nodes` gateway nodes; and the payments stored."""
    import psycopg
    env = {**os.environ, "TAPSTACK_MASTER_KEY": "5e" * 32}
    env.pop("TAPSTACK_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "tapstack", "gateway", "migrate", "--database", url,
                    "--data", str(home / "node-0")], env=env, check=True, capture_output=True)
    ports = [free_port() for _ in range(nodes)]
    procs = [start_node(url, home / f"node-{n}", port, max(1, args.workers // nodes), args.threads, env)
             for n, port in enumerate(ports)]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, proc in zip(bases, procs):
            wait_up(base, proc, seconds=40)
        op = subprocess.run([sys.executable, "-m", "tapstack", "gateway", "operator-key", "--database", url,
                             "--data", str(home / "node-0")], env=env, check=True, capture_output=True,
                            text=True).stdout.strip()
        merchant_id, keys = seed(bases[0], op, args.wallets, args.webhook)
        workers = [w for proc in procs for w in worker_pids(proc.pid)]
        rounds = []
        sampling = threading.Event()
        waits = threading.Thread(target=sample_waits, args=(url, sampling, rounds), daemon=True)
        waits.start()
        for index in range(args.rounds):
            scripts = []
            for n in range(nodes):
                script = home / f"payments-{n}.lua"
                script.write_text(WRK_SCRIPT % {
                    "keys": ", ".join(f'"{k}"' for k in keys), "run": f"{run}n{nodes}r{index}w{n}",
                    "path": "/v1/payments",
                    "body": json.dumps({"merchant_id": merchant_id, "amount": 1250, "currency": "CNY"})})
                scripts.append(script)
            rounds.append(run_split_round(scripts, bases, args, cpus, workers))
        sampling.set()
        waits.join()
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0]
        return rounds, stored
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def print_rounds(label: str, rounds: list[dict], bar_p99_ms: float) -> None:
    for index, r in enumerate(rounds, 1):
        print(f"{label} round {index}: {r['rate']:,.0f} payments/s  p50 {r['p50_us'] / 1000:.2f} ms  "
              f"p99 {r['p99_us'] / 1000:.2f} ms  max {r['max_us'] / 1000:.2f} ms  "
              f"server CPU {r['cpu_ms']:.2f} ms/payment  ({r['ok']} 2xx, {r['non_2xx']} not, "
              f"{r['socket_errors']} socket errors)  p99 bar {'met' if r['p99_us'] / 1000 <= bar_p99_ms else 'MISSED'}")


def postgres_part(database: str, sqlite_rate: float, args, cpus: int) -> None:
    """Payments on PostgreSQL, one node then two, beside raw PostgreSQL commits; printed with ratios."""
    from tapstack.postgres import LocalPostgres
    cluster = None
    if database == "auto":
        cluster = LocalPostgres(settings={"fsync": "on", "synchronous_commit": "on", "shared_buffers": "256MB",
                                          "max_connections": "100"}).start()
    try:
        urls = {}
        for name in ("baseline", "one_node", "two_nodes"):
            if cluster:
                urls[name] = cluster.create_database(f"bench_{name}")
            else:
                urls[name] = database
        home = Path(tempfile.mkdtemp(prefix="tapstack-bench-pg-"))
        raw = [postgres_baseline(urls["baseline"], 1.0, args.connections) for _ in range(2)]
        one, stored_one = postgres_rounds(urls["one_node"], home / "one", 1, args, cpus, f"pg{os.getpid()}")
        if not cluster:
            print("two nodes share the database with the one-node rounds (a URL was given): their counts add up")
        two, stored_two = postgres_rounds(urls["two_nodes"], home / "two", 2, args, cpus, f"pg2{os.getpid()}")
        raw += [postgres_baseline(urls["baseline"], 1.0, args.connections) for _ in range(2)]
        shutil.rmtree(home, ignore_errors=True)
        with __import__("psycopg").connect(urls["baseline"]) as conn:
            settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN"
                                         " ('fsync', 'synchronous_commit', 'server_version')").fetchall())
    finally:
        if cluster:
            cluster.cleanup()
    print(f"postgresql {settings.get('server_version')}: fsync={settings.get('fsync')},"
          f" synchronous_commit={settings.get('synchronous_commit')}: every answered payment is on disk")
    print_rounds("pg 1 node ", one, 50.0)
    print_rounds("pg 2 nodes", two, 50.0)
    for label, rs in (("1 node", one), ("2 nodes", two)):
        print(f"pg {label} sessions' waits (pg_stat_activity every 20 ms): "
              + ", ".join(f"{what} {share:.0%}" for what, share in rs[0].get("waits", [])))
    best_one, best_two = (statistics.median(r["rate"] for r in rs) for rs in (one, two))
    baseline = statistics.median(raw)
    print(f"stored:    {stored_one} payments (one node), {stored_two} (two nodes)")
    print(f"baseline 3: raw PostgreSQL, one committed row per transaction, {args.connections} connections: "
          f"{baseline:,.0f} rows/s (median of {', '.join(f'{b:,.0f}' for b in raw)})")
    print(f"ratios (medians of rounds): pg 1 node / SQLite = {best_one / sqlite_rate:.2f} (bar >= 0.50); "
          f"pg 2 nodes / pg 1 node = {best_two / best_one:.2f} (bar >= 0.90); "
          f"pg 1 node / baseline 3 = {best_one / baseline:.2f}")
    worst_p99 = max(r["p99_us"] for r in one + two) / 1000
    print(f"bars:      p99 <= 50 ms on PostgreSQL: {'met' if worst_p99 <= 50 else 'MISSED'} (worst {worst_p99:.1f} ms);"
          f" one node >= 50% of SQLite: {'met' if best_one >= 0.5 * sqlite_rate else 'MISSED'};"
          f" two nodes >= 90% of one: {'met' if best_two >= 0.9 * best_one else 'MISSED'}")


def profile(payments: int, synchronous: str) -> int:
    """Where a payment's time goes: one thread, in process (Flask's test client), each
    SQL statement timed through a connection subclass; the rest is Python."""
    import collections
    import itertools
    import re

    import gateway.store.sqlite
    from gateway.http.app import create_app
    from gateway.store import SQLiteStore

    spent: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])

    def clocked(run, sql, *args):
        started = time.perf_counter()
        try:
            return run(sql, *args)
        finally:
            entry = spent[re.sub(r"\s+", " ", sql)[:80]]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    class TimedConnection(sqlite3.Connection):
        def execute(self, sql, *args):
            return clocked(super().execute, sql, *args)

        def executemany(self, sql, *args):  # one statement, prepared once, run per row
            return clocked(super().executemany, sql, *args)

    timed = type(sys)("sqlite3_timed")  # the store's sqlite3, its connections timed
    timed.__dict__.update(sqlite3.__dict__)
    timed.connect = lambda *a, **k: sqlite3.connect(*a, factory=TimedConnection, **k)
    gateway.store.sqlite.sqlite3 = timed

    home = Path(tempfile.mkdtemp(prefix="tapstack-profile-"))
    config = Config(home)
    app = create_app(config, store=SQLiteStore(config.db_path, synchronous=synchronous))
    client, n, op = app.test_client(), itertools.count(), operator_key(config)

    def post(path, body, key):
        r = client.post(path, json=body, headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"p{next(n)}"})
        assert r.status_code in (200, 201), r.get_json()
        return r.get_json()

    merchant = post("/v1/merchants", {"name": "m"}, op)
    customer = post("/v1/customers", {"name": "c"}, op)
    wallet = post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"}, op)
    post("/v1/topups", {"wallet_id": wallet["id"], "amount": 9_000_000_000, "currency": "CNY"}, op)
    body = {"merchant_id": merchant["id"], "amount": 1250, "currency": "CNY"}
    for _ in range(20):
        post("/v1/payments", body, wallet["credential"])
    biller = post("/v1/billers", {"name": "Bench Water", "city": "Hangzhou"}, op)
    bills = [b["id"] for start in range(0, payments + 20, 500) for b in post(
        "/v1/bill-batches", {"bills": [{"consumer_number": f"C{n:07d}", "period": "2026-11", "amount_due": 1_250,
                                        "currency": "CNY", "due_date": "2099-12-31"}
                                       for n in range(start, min(start + 500, payments + 20))]},
        biller["api_key"])["bills"]]
    for bill in bills[:20]:
        post(f"/v1/bills/{bill}/payments", {}, wallet["credential"])
    print(f"profile: one thread, in process, synchronous={synchronous}")
    for what, path in (("payment", lambda _: "/v1/payments"), ("bill payment", lambda i: f"/v1/bills/{bills[20 + i]}/payments")):
        spent.clear()
        started = time.perf_counter()
        for i in range(payments):
            post(path(i), body if what == "payment" else {}, wallet["credential"])
        total = (time.perf_counter() - started) / payments * 1000
        sql = sum(t for _, t in spent.values()) / payments * 1000
        count = sum(c for c, _ in spent.values()) / payments
        print(f"per {what} ({payments}): {total:.2f} ms = SQL {sql:.2f} ms ({count:.0f} statements) "
              f"+ Python {total - sql:.2f} ms")
        for text, (c, t) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:24]:
            print(f"  {t / payments * 1000:6.3f} ms  x{c / payments:.0f}  {text}")
    shutil.rmtree(home, ignore_errors=True)
    return 0


def print_ceiling(payments: list[dict], ceiling: dict[str, list[dict]], server: str) -> None:
    """Each level's rate and server CPU per request (medians of rounds) beside the payments',
    and a payment's CPU split into the layers the levels add one by one."""
    rows = [(label, statistics.median(r["rate"] for r in rs), statistics.median(r["cpu_ms"] for r in rs),
             statistics.median(r["p99_us"] for r in rs) / 1000) for label, rs in ceiling.items()]
    pay_rate = statistics.median(r["rate"] for r in payments)
    pay_cpu = statistics.median(r["cpu_ms"] for r in payments)
    pay_p99 = statistics.median(r["p99_us"] for r in payments) / 1000
    rows.append(("a payment (POST /v1/payments)", pay_rate, pay_cpu, pay_p99))
    print(f"ceiling:   {server}; the same wrk, the same run, medians of rounds (each level run after the payments"
          " in each round)")
    for label, rate, cpu, p99 in rows:
        print(f"  {label:<40} {rate:>8,.0f} requests/s  p99 {p99:6.2f} ms  server CPU {cpu:.3f} ms/request"
              f"  payments / this = {pay_rate / rate:.2f}")
    layers = [f"{server} (HTTP, WSGI)", "Flask", "the gateway app's hooks",
              "the gateway's framing (key, body, rate count, idempotency)", "the payment itself"]
    before = 0.0
    print(f"  a payment's server CPU, {pay_cpu:.3f} ms, by layer:")
    for name, (_, _, cpu, _) in zip(layers, rows):
        print(f"    {name:<60} {cpu - before:+.3f} ms  ({(cpu - before) / pay_cpu:5.1%})")
        before = cpu
    flask_rate = rows[1][1]
    print(f"  bare Flask under {server}: {flask_rate:,.0f} requests/s, "
          f"{'above' if flask_rate >= BAR_RATE else 'BELOW'} the bar of {BAR_RATE:,} payments/s")


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def worker_pids(master: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


def run_round(script: Path, base: str, args, cpus: int, workers: list[int]) -> dict:
    wrk = ["wrk", "-t1", f"-c{args.connections}", f"-d{max(1, round(args.seconds))}s", "--latency",
           "-s", str(script), base]
    if cpus > 1 and shutil.which("taskset"):
        wrk = ["taskset", "-c", str(cpus - 1)] + wrk
    cpu_before = process_cpu_seconds(workers)
    out = subprocess.run(wrk, capture_output=True, text=True, timeout=args.seconds + 60)
    cpu = process_cpu_seconds(workers) - cpu_before
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["ok"] = result["requests"] - result["non_2xx"]
    result["rate"] = result["ok"] / (result["duration_us"] / 1e6)
    result["cpu_ms"] = cpu / max(1, result["ok"]) * 1000
    return result


def start_server(home: Path, port: int, workers: int, threads: int, synchronous: str,
                 page_size: int | None = None, server: str = "gunicorn", app: str | None = None) -> subprocess.Popen:
    """The gateway under gunicorn (gthread), or granian (WSGI), on 127.0.0.1:port, its data
    in home/gateway (TAPSTACK_HOME=home), the store at `synchronous`. Call wait_up before
    using it, and stop it with os.killpg(server.pid, signal.SIGTERM): it runs in its own session."""
    config = Config(home / "gateway")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TAPSTACK_HOME": str(home), "BENCH_SYNCHRONOUS": synchronous,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(REPO / "bench"), os.environ.get("PYTHONPATH")]))}
    # Migrate and make the secrets once, before the workers start (two workers creating
    # the same secret at once race on secrets.json; see the gateway's Config).
    from gateway.http.app import create_app
    from gateway.store import SQLiteStore
    setup = SQLiteStore(config.db_path, **({"page_size": page_size} if page_size else {}))
    create_app(config, store=setup)
    setup.close()
    for name in ("operator_key", "idempotency_seal", "terminal_master", "session_key"):
        config.secret(name)
    app = app or os.environ.get("BENCH_APP", "gateway_bench:make_app()")
    if server == "granian":
        command = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--blocking-threads", str(threads),
                   "--log-level", "warning", "--no-access-log", "--factory", app.removesuffix("()")]
    else:
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                   "--worker-class", "gthread", "--threads", str(threads), "--log-level", "warning", app]
    return subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--wallets", type=int, default=16)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                        help="the store's SQLite synchronous level (the gateway's default is FULL)")
    parser.add_argument("--page-size", type=int, default=None,
                        help="SQLite page size of the new database (default: the store's)")
    parser.add_argument("--webhook", action="store_true", help="the merchant has a webhook endpoint")
    parser.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn",
                        help="the WSGI server on SQLite (gunicorn gthread, as `tapstack gateway serve`; or granian)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the ceiling (requests that stop short of a payment, run after it in each round)")
    parser.add_argument("--database", metavar="URL|auto", default=None,
                        help="then PostgreSQL too: an empty database's URL, or auto for a cluster of the bench's own")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="instead: N payments in process, time split into SQL statements and Python")
    args = parser.parse_args()
    if args.profile:
        return profile(args.profile, args.synchronous)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian package wrk; `make setup` installs it)", file=sys.stderr)
        return 2
    if args.server == "granian" and importlib.util.find_spec("granian") is None:
        print("granian is not installed: it is measured, not a dependency (pip install granian)", file=sys.stderr)
        return 2

    home = Path(tempfile.mkdtemp(prefix="tapstack-bench-"))
    config = Config(home / "gateway")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cpus = os.cpu_count() or 1
    synchronous = args.synchronous
    # the disk's fsync time drifts (host caches, writeback): sample the baselines before and after the load
    singles = [sqlite_baseline(home, synchronous, 1.0) for _ in range(2)]
    grouped = [group_commit_baseline(home, synchronous, 1.0, args.connections)]
    server = start_server(home, port, args.workers, args.threads, synchronous, args.page_size, args.server)
    bare_port = free_port()
    bare = (start_server(home / "bare", bare_port, args.workers, args.threads, synchronous, server=args.server,
                         app="gateway_bench:make_bare_app()") if args.ceiling else None)
    rounds, ceiling = [], {label: [] for label, _, _ in CEILING}
    try:
        wait_up(base, server)
        merchant_id, keys = seed(base, operator_key(config), args.wallets, args.webhook)
        script = home / "payments.lua"
        workers = worker_pids(server.pid)
        bases = {"gateway": (base, workers)}
        if bare:
            wait_up(f"http://127.0.0.1:{bare_port}", bare, path="/wsgi")
            bases["bare"] = (f"http://127.0.0.1:{bare_port}", worker_pids(bare.pid))
        for index in range(args.rounds):
            body = json.dumps({"merchant_id": merchant_id, "amount": 1250, "currency": "CNY"})
            keys_lua = ", ".join(f'"{k}"' for k in keys)
            script.write_text(WRK_SCRIPT % {"keys": keys_lua, "run": f"bench{os.getpid()}r{index}",
                                            "path": "/v1/payments", "body": body})
            rounds.append(run_round(script, base, args, cpus, workers))
            for label, where, path in (CEILING if bare else ()):
                script.write_text(WRK_SCRIPT % {"keys": keys_lua, "run": f"ceil{os.getpid()}r{index}",
                                                "path": path, "body": body})
                ceiling[label].append(run_round(script, bases[where][0], args, cpus, bases[where][1]))
        with sqlite3.connect(config.db_path) as db:
            stored = db.execute("SELECT COUNT(*) FROM payments").fetchone()[0]
    finally:
        for proc in filter(None, (server, bare)):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in filter(None, (server, bare)):
            proc.wait(timeout=30)
    singles += [sqlite_baseline(home, synchronous, 1.0) for _ in range(2)]
    grouped.append(group_commit_baseline(home, synchronous, 1.0, args.connections))
    single = statistics.median(singles)
    group = statistics.median(rate for rate, _ in grouped)

    served_by = "gunicorn gthread" if args.server == "gunicorn" else "granian wsgi"
    print(f"gateway: {served_by} {args.workers} workers x {args.threads} threads on {cpus} cores; "
          f"wrk 1 thread, {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s"
          + (", pinned to core %d" % (cpus - 1) if cpus > 1 else "")
          + (", merchant has a webhook endpoint" if args.webhook else ""))
    load = os.getloadavg()
    print(f"machine:   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work on it skews every figure)")
    for index, r in enumerate(rounds, 1):
        met = r["rate"] >= BAR_RATE and r["p99_us"] / 1000 <= BAR_P99_MS and r["cpu_ms"] <= BAR_CPU_MS
        print(f"round {index}:   {r['rate']:,.0f} payments/s  p50 {r['p50_us'] / 1000:.2f} ms  "
              f"p90 {r['p90_us'] / 1000:.2f} ms  p99 {r['p99_us'] / 1000:.2f} ms  max {r['max_us'] / 1000:.2f} ms  "
              f"server CPU {r['cpu_ms']:.2f} ms/payment  ({r['ok']} 2xx, {r['non_2xx']} not, "
              f"{r['socket_errors']} socket errors)  bar {'met' if met else 'MISSED'}")
    best = max(rounds, key=lambda r: r["rate"])
    answered = sum(r["ok"] for r in rounds)
    print(f"stored:    {stored} payments in the database, {answered} answered 2xx in the rounds "
          "(payments in flight when a round ends are stored but not counted)")
    print(f"durability: SQLite WAL, synchronous={synchronous}: survives {SURVIVES.get(synchronous, '?')}")
    print(f"baseline 1: raw SQLite, one committed row per transaction: {single:,.0f} rows/s "
          f"(median of {len(singles)}: {', '.join(f'{b:,.0f}' for b in singles)})")
    print(f"baseline 2: raw rows through the store's group commit, {args.connections} threads: {group:,.0f} rows/s "
          f"({', '.join(f'{r:,.0f}/s at {b:.1f} rows per commit' for r, b in grouped)})")
    print(f"ratio:     gateway (best round) / baseline 1 = {best['rate'] / single:.2f}; "
          f"/ baseline 2 = {best['rate'] / group:.2f}")
    met = sum(r["rate"] >= BAR_RATE and r["p99_us"] / 1000 <= BAR_P99_MS and r["cpu_ms"] <= BAR_CPU_MS
              for r in rounds)
    print(f"bar:       >= {BAR_RATE:,} payments/s with p99 <= {BAR_P99_MS:g} ms and <= {BAR_CPU_MS:g} ms server CPU"
          f" per payment: met in {met} of {len(rounds)} rounds")
    if bare:
        print_ceiling(rounds, ceiling, served_by)
    if args.keep:
        print(f"data:      {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    if args.database:
        postgres_part(args.database, statistics.median(r["rate"] for r in rounds), args, cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
