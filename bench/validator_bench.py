"""Validator and tap-ingestion benchmark.

1. Validator decisions: a whole decision as the bus validator takes it (repeat check,
   SELECT, DEBIT, offline verification, the journal write with its fsync, reader signal,
   panel), through the mock reader and through the real pcscd with the card on
   vsmartcard-vpcd. Baseline in the same run, interleaved: terminal.tap.tap alone (the
   card exchange and verification, no journal).
2. Gateway ingestion: POST /v1/taps with batches of 500 verified purse taps (HMAC
   request, receipt verification with certificates cached, counter chain, the upload's
   settlement in one linked ledger call), in rounds, each on a fresh gateway. Baseline in
   the same round: raw SQLite inserts of as many rows of the same width, 500 per
   transaction, WAL and the store's synchronous level.

    python bench/validator_bench.py [--taps 1000] [--transport mock ...] [--skip-validator]
        [--skip-ingestion] [--rounds 3] [--cards 200] [--per-card 50] [--order interleaved|by-card]
        [--gunicorn 4] [--database URL|auto]

--database auto (or an empty PostgreSQL server's URL) runs the ingestion rounds on
PostgreSQL as well, each on a fresh database, beside raw PostgreSQL inserts, and prints
the PostgreSQL / SQLite ratio.

--gunicorn N adds the same upload over HTTP to gunicorn (2 gthread workers, as the
gateway is served), N validators uploading at once: receipts are verified before an
upload takes the write lock, so two workers verify two uploads on two cores.

Targets: validator p99 <= 15 ms through pcscd+vpcd; >= 15,000 verified taps/s ingested over HTTP.
Only one pcscd can run on a machine: the pcscd+vpcd part starts its own and stops it,
and is skipped (said so) when another program's pcscd is running.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tap_bench import open_transport, percentile  # noqa: E402

TARGET_P99_MS = 15.0
TARGET_TAPS_PER_S = 15000
TERMINAL_ID = b"BENCH001"


# --- 1. validator decisions ---------------------------------------------------------------

def measure_validator(kind: str, taps: int, warmup: int = 20) -> dict:
    from terminal.bus import Validator
    from terminal.journal import Journal
    from terminal.settings import Settings
    from terminal.tap import TapContext, tap
    from wallet.testcards import demo_purse_card

    demo = demo_purse_card(balance=100_000)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        reader, _ = open_transport(kind, stack, demo.card)
        session = reader.wait_for_card(10)
        if session is None:
            raise SystemExit(f"{kind}: the card did not show up in the reader")
        journal = Journal(Path(tmp) / "journal.db", TERMINAL_ID)
        stack.callback(journal.close)
        settings = Settings(route="R1", stop="S1", fare=1, token_key=demo.token_key, terminal_id=TERMINAL_ID,
                            journal=Path(tmp) / "journal.db", repeat_window=timedelta(0))
        v = Validator(settings, reader, journal, out=lambda _: None)
        v.ref.issuer_keys = demo.issuer_keys
        decide_ms, base_ms = [], []
        for i in range(warmup + taps):
            ctx = TapContext(1, "CNY", TERMINAL_ID, demo.issuer_keys, demo.token_key, datetime.now(timezone.utc))
            t0 = time.perf_counter()
            outcome, _ = tap(session, ctx)
            t1 = time.perf_counter()
            decision = v.handle_card(session)
            t2 = time.perf_counter()
            if outcome.reason != "paid" or decision.reason != "paid":
                raise SystemExit(f"{kind}: tap {i}: {outcome.reason} / {decision.reason} ({decision.detail})")
            if i >= warmup:
                base_ms.append((t1 - t0) * 1000)
                decide_ms.append((t2 - t1) * 1000)
    decide_ms.sort()
    base_ms.sort()
    return {"transport": kind, "p50": percentile(decide_ms, 50), "p99": percentile(decide_ms, 99),
            "base_p50": percentile(base_ms, 50), "base_p99": percentile(base_ms, 99),
            "per_s": 1000 / (sum(decide_ms) / len(decide_ms))}


# --- 2. gateway ingestion -----------------------------------------------------------------

def build_taps(client, operator_key: str, cards: int, per_card: int, now: datetime):
    """A gateway world: a wallet, its loaded purse cards, a terminal; and the upload rows of
    cards * per_card purse taps made by terminal.tap.tap over the mock reader."""
    from protocol import ed25519
    from protocol.purse import select_command, topup_command
    from terminal.card import Place, decide
    from terminal.readers.mock import MockReader
    from terminal.tap import TapContext, tap
    from wallet.purse import new_purse, purse_card
    from wallet.state import MemoryStore

    keys = itertools.count()
    run = os.urandom(4).hex()  # a world per call: its requests' keys never meet another's

    def call(method, path, body=None, auth=operator_key):
        r = client.open(path, method=method, json=body, headers={
            "Authorization": f"Bearer {auth}", "Idempotency-Key": f"bench-{run}-{next(keys)}"})
        if r.status_code >= 300:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.get_data(as_text=True)}")
        return r.get_json()

    customer = call("POST", "/v1/customers", {"name": "Bench rider"})
    wallet = call("POST", "/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"})
    call("POST", "/v1/topups", {"wallet_id": wallet["id"], "amount": cards * 50_000, "currency": "CNY"})
    merchant = call("POST", "/v1/merchants", {"name": "Bench buses"})
    terminal = call("POST", "/v1/terminals", {"merchant_id": merchant["id"]})
    issuer_keys = {bytes.fromhex(k["key_id"]): bytes.fromhex(k["public_key"])
                   for k in client.get("/v1/issuer/keys").get_json()["data"]}
    rows, n = [], itertools.count(1)
    for _ in range(cards):
        seed = os.urandom(32)
        card = call("POST", f"/v1/wallets/{wallet['id']}/card", {"public_key": ed25519.public_key(seed).hex()},
                    auth=wallet["credential"])
        state = new_purse(seed, bytes.fromhex(card["card_id"]), bytes.fromhex(card["certificate"]),
                          next(iter(issuer_keys.values())), "CNY", 0)
        vcard = purse_card(MemoryStore(state), b"\x04" + os.urandom(6))
        load = call("POST", f"/v1/wallets/{wallet['id']}/purse-loads",
                    {"card_id": card["card_id"], "amount": 50_000, "currency": "CNY", "counter": 0},
                    auth=wallet["credential"])
        vcard.power_on()
        vcard.process(select_command())
        vcard.process(topup_command(bytes.fromhex(load["authorisation"])))
        reader = MockReader(vcard)
        for _ in range(per_card):
            ctx = TapContext(200, "CNY", TERMINAL_ID, issuer_keys, b"k" * 32, now)
            outcome, _ = tap(reader.wait_for_card(0), ctx)
            decision = decide(outcome, now=now, place=Place("R1", "S1"), rules_version=1, recent={})
            rows.append({"id": f"{TERMINAL_ID.hex()}-{next(n):010d}", **decision.to_json()})
    return rows, (terminal["key_id"], bytes.fromhex(terminal["secret"])), merchant["id"]


def upload_order(rows: list[dict], per_card: int, order: str) -> list[dict]:
    """by-card: each card's taps together (build order); interleaved: round robin over the
    cards, each card's taps still in counter order, as a bus sees many riders."""
    if order == "by-card":
        return rows
    cards = [rows[i:i + per_card] for i in range(0, len(rows), per_card)]
    return [taps[k] for k in range(per_card) for taps in cards if k < len(taps)]


def measure_ingestion(cards: int, per_card: int, order: str, batch: int = 500, database: str | None = None) -> dict:
    """One round on a fresh gateway: SQLite in a temporary directory, or the empty PostgreSQL
    database `database` (migrated here)."""
    from gateway.core import ledger
    from gateway.http.app import create_app
    from gateway.http.auth import operator_key
    from gateway.config import Config
    from gateway.core import clearing
    from protocol import request_signing

    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(Path(tmp) / "gateway", database)
        os.environ.setdefault("TAPSTACK_MASTER_KEY", "5e" * 32)  # PostgreSQL keeps the secrets, sealed
        store = config.open_store()  # the gateway's defaults: SQLite WAL, synchronous=FULL; PostgreSQL fsync
        if database:
            store.migrate()
        app = create_app(config, store=store)
        client = app.test_client()
        rows, (key_id, secret), merchant_id = build_taps(client, operator_key(config), cards, per_card, now)
        rows = upload_order(rows, per_card, order)
        for k, row in enumerate(rows):  # tap ids in upload order, as a validator numbers them
            row["id"] = f"{TERMINAL_ID.hex()}-{k + 1:010d}"
        batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]
        batch_ms, cpu_ms = [], []
        for k, chunk in enumerate(batches):
            body = json.dumps({"taps": chunk}, separators=(",", ":")).encode()
            headers = request_signing.signed_headers(key_id, secret, "POST", "/v1/taps", body,
                                                     timestamp=int(time.time()), nonce=f"bench-nonce-{k:08d}")
            headers.update({"Content-Type": "application/json", "Idempotency-Key": f"bench-batch-{k}"})
            t0, c0 = time.perf_counter(), time.process_time()
            r = client.post("/v1/taps", data=body, headers=headers)
            batch_ms.append((time.perf_counter() - t0) * 1000)
            cpu_ms.append((time.process_time() - c0) * 1000)
            answer = r.get_json()
            if r.status_code != 200 or answer["accepted"] != len(chunk):
                raise SystemExit(f"batch {k}: {r.status_code} {str(answer)[:300]}")
            bad = [x for x in answer["results"] if x["clearing"] != "posted"]
            if bad:
                raise SystemExit(f"batch {k}: not posted: {bad[:3]}")
        with store.read() as tx:
            revenue = ledger.get_account(tx, clearing.revenue_account_id(merchant_id, "CNY"))["balance"]
            if revenue != 200 * len(rows) or not ledger.check(tx).ok:
                raise SystemExit(f"the books are wrong after ingestion: revenue {revenue}")
            legs = tx.one("SELECT COUNT(*) AS n FROM ledger_transfers WHERE code = :c",
                          {"c": clearing.TRANSFER_CODE})["n"]
        synchronous = getattr(store, "synchronous", "on")  # PostgreSQL: synchronous_commit, as the cluster has it
        store.close()
        config.close()
        raw = raw_postgres_inserts(database, batches) if database else raw_inserts(Path(tmp), batches, synchronous)
    total_s = sum(batch_ms) / 1000
    batch_ms.sort()
    return {"taps": len(rows), "batches": len(batches), "per_s": len(rows) / total_s,
            "per_cpu_s": len(rows) / (sum(cpu_ms) / 1000), "load": os.getloadavg()[0], "legs": legs,
            "batch_p50": percentile(batch_ms, 50), "batch_p99": percentile(batch_ms, 99),
            **raw, "synchronous": synchronous}


def raw_inserts(directory: Path, batches: list[list[dict]], synchronous: str) -> dict:
    """Baseline: the same number of rows of the same width, raw sqlite3, 500 per commit,
    WAL and the same synchronous level."""
    db = sqlite3.connect(directory / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE t (terminal_id TEXT, tap_id TEXT, body TEXT, PRIMARY KEY (terminal_id, tap_id))")
    raw_ms = []
    for chunk in batches:
        values = [("term", r["id"], json.dumps(r)) for r in chunk]
        t0 = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", values)
        db.execute("COMMIT")
        raw_ms.append((time.perf_counter() - t0) * 1000)
    db.close()
    rows = sum(len(chunk) for chunk in batches)
    raw_ms.sort()
    return {"raw_per_s": rows / (sum(raw_ms) / 1000), "raw_p50": percentile(raw_ms, 50)}


def raw_postgres_inserts(url: str, batches: list[list[dict]]) -> dict:
    """Baseline on PostgreSQL: the same rows through psycopg, 500 per commit, into a table of
    the same width in the same database."""
    import psycopg

    raw_ms = []
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE bench_raw (terminal_id TEXT, tap_id TEXT, body TEXT, PRIMARY KEY (terminal_id, tap_id))")
        for chunk in batches:
            values = [("term", r["id"], json.dumps(r)) for r in chunk]
            t0 = time.perf_counter()
            with db.transaction(), db.cursor() as cursor:
                cursor.executemany("INSERT INTO bench_raw VALUES (%s, %s, %s)", values)
            raw_ms.append((time.perf_counter() - t0) * 1000)
    rows = sum(len(chunk) for chunk in batches)
    raw_ms.sort()
    return {"raw_per_s": rows / (sum(raw_ms) / 1000), "raw_p50": percentile(raw_ms, 50)}


def postgres_ingestion(database: str, rounds: int, cards: int, per_card: int, order: str) -> list[dict]:
    """The ingestion rounds on PostgreSQL: `database` "auto" starts a cluster of the bench's own
    (fsync and synchronous_commit on), a fresh database per round; a URL names a server whose
    role may create databases."""
    import psycopg

    from tapstack.postgres import LocalPostgres
    cluster = LocalPostgres(settings={"fsync": "on", "synchronous_commit": "on", "shared_buffers": "256MB"}).start() \
        if database == "auto" else None
    results = []
    try:
        for n in range(rounds):
            name = f"bench_ingest_{os.getpid()}_{n}"
            if cluster:
                url = cluster.create_database(name)
            else:
                with psycopg.connect(database, autocommit=True) as admin:
                    admin.execute(f'CREATE DATABASE "{name}"')
                url = psycopg.conninfo.make_conninfo(database, dbname=name)
            results.append(measure_ingestion(cards, per_card, order, database=url))
    finally:
        if cluster:
            cluster.cleanup()
    return results


def measure_gunicorn(validators: int, cards: int, per_card: int, order: str, workers: int = 2,
                     threads: int = 4) -> dict:
    """POST /v1/taps over HTTP to gunicorn (gthread, as `tapstack gateway serve` runs it),
    `validators` terminals uploading their batches at once, each in its own order."""
    from gateway.http.app import create_app
    from gateway.http.auth import operator_key
    from gateway.config import Config
    from gateway.store import SQLiteStore
    from gateway_bench import free_port, process_cpu_seconds, wait_up, worker_pids
    from protocol import request_signing

    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as home:
        config = Config(Path(home) / "gateway")
        store = SQLiteStore(config.db_path)  # migrated here, before the workers start
        client = create_app(config, store=store).test_client()
        fleets = []
        for _ in range(validators):
            rows, (key_id, secret), _ = build_taps(client, operator_key(config), cards, per_card, now)
            rows = upload_order(rows, per_card, order)
            for k, row in enumerate(rows):
                row["id"] = f"{key_id}-{k + 1:010d}"
            fleets.append((key_id, secret, [rows[i:i + 500] for i in range(0, len(rows), 500)]))
        synchronous = store.synchronous
        store.close()
        for name in ("operator_key", "idempotency_seal", "terminal_master", "session_key"):
            config.secret(name)  # made once, not raced by two workers
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "TAPSTACK_HOME": home, "BENCH_SYNCHRONOUS": synchronous,
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])}
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
                                   str(workers), "--worker-class", "gthread", "--threads", str(threads),
                                   "--log-level", "warning", "gateway_bench:make_app()"],
                                  cwd=ROOT, env=env, start_new_session=True)
        batch_ms, failures = [], []

        def upload(key_id: str, secret: bytes, batches: list[list[dict]]) -> None:
            for k, chunk in enumerate(batches):
                body = json.dumps({"taps": chunk}, separators=(",", ":")).encode()
                headers = request_signing.signed_headers(key_id, secret, "POST", "/v1/taps", body,
                                                         timestamp=int(time.time()),
                                                         nonce=f"bench-{key_id[-12:]}-{k:08d}")
                headers.update({"Content-Type": "application/json", "Idempotency-Key": f"bench-{key_id}-{k}"})
                t0 = time.perf_counter()
                try:
                    request = urllib.request.Request(base + "/v1/taps", body, headers, method="POST")
                    with urllib.request.urlopen(request, timeout=120) as r:
                        answer = json.loads(r.read())
                except OSError as e:
                    failures.append(f"{key_id} batch {k}: {e}")
                    return
                batch_ms.append((time.perf_counter() - t0) * 1000)
                if answer["accepted"] != len(chunk) or any(x["clearing"] != "posted" for x in answer["results"]):
                    failures.append(f"{key_id} batch {k}: not all accepted and posted")

        try:
            wait_up(base, server)
            workers_now = worker_pids(server.pid)
            uploaders = [threading.Thread(target=upload, args=fleet) for fleet in fleets]
            t0, cpu0 = time.perf_counter(), process_cpu_seconds(workers_now)
            for u in uploaders:
                u.start()
            for u in uploaders:
                u.join()
            wall_s, cpu_s = time.perf_counter() - t0, process_cpu_seconds(workers_now) - cpu0
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server this bench started, by its own id
            server.wait(timeout=30)
        if failures:
            raise SystemExit(f"gunicorn ingestion failed: {failures[:3]}")
        store = SQLiteStore(config.db_path)
        with store.read() as tx:
            if not ledger_ok(tx):
                raise SystemExit("the books are wrong after ingestion under gunicorn")
        store.close()
        batches = [chunk for fleet in fleets for chunk in fleet[2]]
        raw = raw_inserts(Path(home), batches, synchronous)
    taps = sum(len(chunk) for chunk in batches)
    batch_ms.sort()
    return {"taps": taps, "batches": len(batches), "per_s": taps / wall_s, "load": os.getloadavg()[0],
            "per_cpu_s": taps / max(cpu_s, 1e-9),
            "batch_p50": percentile(batch_ms, 50), "batch_p99": percentile(batch_ms, 99), **raw,
            "synchronous": synchronous, "validators": validators, "workers": workers, "threads": threads}


def ledger_ok(tx) -> bool:
    from gateway.core import ledger

    return ledger.check(tx).ok


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return percentile(ordered, 50)


def other_pcscd() -> bool:
    """A pcscd this bench did not start is running (one serves the machine; never touch it)."""
    try:
        pid = int(Path("/run/pcscd/pcscd.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=1000, help="validator decisions per transport")
    parser.add_argument("--transport", action="append", choices=("mock", "pcscd+vpcd"))
    parser.add_argument("--cards", type=int, default=200, help="purse cards for the ingestion part")
    parser.add_argument("--per-card", type=int, default=50, help="taps per card for the ingestion part")
    parser.add_argument("--order", choices=("interleaved", "by-card"), default="interleaved",
                        help="upload order: riders mixed (each card's taps in counter order) or card by card")
    parser.add_argument("--rounds", type=int, default=3, help="ingestion rounds, each on a fresh gateway")
    parser.add_argument("--skip-ingestion", action="store_true")
    parser.add_argument("--skip-validator", action="store_true", help="the ingestion part alone")
    parser.add_argument("--gunicorn", type=int, default=0, metavar="N",
                        help="also ingest over HTTP to gunicorn (2 workers), N validators uploading at once, "
                             "--cards / N cards each")
    parser.add_argument("--database", metavar="URL|auto",
                        help="then the ingestion rounds on PostgreSQL too: auto starts a cluster of the bench's own; "
                             "a URL names a server where the bench may create its databases")
    args = parser.parse_args(argv)
    failed = False

    kinds = [] if args.skip_validator else list(args.transport or ("mock", "pcscd+vpcd"))
    if "pcscd+vpcd" in kinds and other_pcscd():
        print("pcscd+vpcd skipped: another program's pcscd is running (/run/pcscd/pcscd.pid)\n")
        kinds.remove("pcscd+vpcd")
    rows = [measure_validator(kind, args.taps) for kind in kinds]
    if rows:
        print_validator(rows, args.taps)
    failed |= any(r["transport"] == "pcscd+vpcd" and r["p99"] > TARGET_P99_MS for r in rows)

    if not args.skip_ingestion:
        on_sqlite = [measure_ingestion(args.cards, args.per_card, args.order) for _ in range(args.rounds)]
        failed |= not print_ingestion(on_sqlite, args.order)
        if args.database:
            on_postgres = postgres_ingestion(args.database, args.rounds, args.cards, args.per_card, args.order)
            print_ingestion(on_postgres, args.order, "PostgreSQL")
            ratio = median([r["per_s"] for r in on_postgres]) / median([r["per_s"] for r in on_sqlite])
            print(f"PostgreSQL / SQLite (medians of rounds, same run): {ratio:.2f}")
    if args.gunicorn:
        cards = max(1, args.cards // args.gunicorn)
        failed |= not print_gunicorn([measure_gunicorn(args.gunicorn, cards, args.per_card, args.order)
                                      for _ in range(args.rounds)], args.order)
    return 1 if failed else 0


def print_gunicorn(rounds: list[dict], order: str) -> bool:
    g = rounds[0]
    print(f"\ngateway ingestion over HTTP: gunicorn gthread {g['workers']} workers x {g['threads']} threads, "
          f"{g['validators']} validators uploading at once, {g['taps']} verified purse taps in {g['batches']} "
          f"batches of 500, {order} order, synchronous={g['synchronous']} (WAL)")
    print("baseline, same round: raw SQLite inserts of as many rows, 500 per commit, same WAL and synchronous\n")
    header = (f"{'round':>5} {'taps/s':>8} {'per CPU-s':>9} {'batch p50':>9} {'p99 ms':>8} {'raw rows/s':>10} "
              f"{'raw p50':>8} {'ratio':>6} {'load':>5}")
    print(header)
    print("-" * len(header))
    for n, r in enumerate(rounds, 1):
        print(f"{n:>5} {r['per_s']:>8.0f} {r['per_cpu_s']:>9.0f} {r['batch_p50']:>9.1f} {r['batch_p99']:>8.1f} "
              f"{r['raw_per_s']:>10.0f} {r['raw_p50']:>8.1f} {r['raw_per_s'] / r['per_s']:>5.0f}x {r['load']:>5.1f}")
    per_s = median([r["per_s"] for r in rounds])
    print(f"median {per_s:.0f} verified taps/s; {median([r['per_cpu_s'] for r in rounds]):.0f} per CPU-second of "
          "the server's workers (what 2 free cores would bound)")
    ok = per_s >= TARGET_TAPS_PER_S
    print(f"  target >= {TARGET_TAPS_PER_S} verified taps/s: {'met' if ok else 'MISSED'}")
    return ok


def print_validator(rows: list[dict], taps: int) -> None:
    print(f"validator decision (repeat check, SELECT, DEBIT, verification, fsynced journal, signal, panel), "
          f"{taps} per transport")
    print("baseline, same run, interleaved: terminal.tap.tap alone (card exchange + verification)\n")
    header = (f"{'transport':<12} {'decisions/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'tap p50':>8} {'tap p99':>8} "
              f"{'p50 ratio':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['transport']:<12} {r['per_s']:>11.0f} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['base_p50']:>8.3f} "
              f"{r['base_p99']:>8.3f} {r['p50'] / r['base_p50']:>8.1f}x")
        if r["transport"] == "pcscd+vpcd":
            ok = r["p99"] <= TARGET_P99_MS
            print(f"  target p99 <= {TARGET_P99_MS:g} ms through pcscd+vpcd: {'met' if ok else 'MISSED'}")


def print_ingestion(rounds: list[dict], order: str, backend: str = "SQLite") -> bool:
    """The rounds' table and the target's verdict (on the median round)."""
    g = rounds[0]
    durability = f"synchronous={g['synchronous']} (WAL)" if backend == "SQLite" else "fsync and synchronous_commit on"
    print(f"\ngateway ingestion on {backend}: POST /v1/taps, {g['taps']} verified purse taps in {g['batches']} "
          f"batches of 500, {order} upload order, {durability}")
    print(f"baseline, same round: raw {backend} inserts of as many rows, 500 per commit, same durability\n")
    header = (f"{'round':>5} {'taps/s':>8} {'per CPU-s':>9} {'batch p50':>9} {'p99 ms':>8} {'fare legs':>9} "
              f"{'raw rows/s':>10} {'raw p50':>8} {'ratio':>6} {'load':>5}")
    print(header)
    print("-" * len(header))
    for n, r in enumerate(rounds, 1):
        print(f"{n:>5} {r['per_s']:>8.0f} {r['per_cpu_s']:>9.0f} {r['batch_p50']:>9.1f} {r['batch_p99']:>8.1f} "
              f"{r['legs']:>9} {r['raw_per_s']:>10.0f} {r['raw_p50']:>8.1f} {r['raw_per_s'] / r['per_s']:>5.0f}x "
              f"{r['load']:>5.1f}")
    per_s = median([r["per_s"] for r in rounds])
    print(f"median {per_s:.0f} verified taps/s; raw inserts {median([r['raw_per_s'] for r in rounds]):.0f} rows/s "
          f"({os.cpu_count()} CPUs, load is the 1-minute average after the round)")
    ok = per_s >= TARGET_TAPS_PER_S
    print(f"  target >= {TARGET_TAPS_PER_S} verified taps/s: {'met' if ok else 'MISSED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
