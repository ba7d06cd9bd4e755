"""Store.write: queued jobs share one commit; a failing job undoes only itself; a busy
database answers StoreBusy (503 through the API), never a hang or a 500."""
from __future__ import annotations

import contextvars
import sqlite3
import threading
import time

import pytest

from gateway.http.runtime import Runtime
from gateway.store import IntegrityError, StoreBusy, StoreError
from gateway.store.sqlite import SQLiteStore
from tests.gateway.fixtures import error, ok


@pytest.fixture
def simple(tmp_path):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_items.sql").write_text(
        "CREATE TABLE items (id TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0));")
    store = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)
    yield store
    store.close()


def rows(store) -> dict:
    with store.read() as tx:
        return {r["id"]: r["qty"] for r in tx.query("SELECT id, qty FROM items")}


def queued_behind_a_writer(store, jobs):
    """Run each job through store.write on its own thread while another transaction holds
    the writer lock, so all of them queue; then let go. Returns (outcomes, batches made)."""
    holding, release = threading.Event(), threading.Event()
    outcomes: dict[int, object] = {}

    def hold():
        with store.transaction():
            holding.set()
            release.wait(10)

    def submit(index, job):
        try:
            outcomes[index] = ("ok", store.write(job))
        except Exception as e:  # noqa: BLE001 - the test looks at what each caller got
            outcomes[index] = ("error", e)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    batches = store.batches
    threads = [threading.Thread(target=submit, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(store._queue) < len(jobs) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(store._queue) == len(jobs), "the jobs did not all queue"
    release.set()
    holder.join()
    for t in threads:
        t.join(10)
    return outcomes, store.batches - batches


def insert(item_id, qty=1):
    def job(tx):
        tx.insert("items", {"id": item_id, "qty": qty})
        return item_id
    return job


def test_queued_jobs_commit_together_and_each_gets_its_own_result(simple):
    outcomes, batches = queued_behind_a_writer(simple, [insert(f"i{n}") for n in range(20)])
    assert outcomes == {n: ("ok", f"i{n}") for n in range(20)}
    assert batches == 1
    assert rows(simple) == {f"i{n}": 1 for n in range(20)}


def test_a_failing_job_undoes_only_its_own_work(simple):
    def half_then_fail(tx):
        tx.insert("items", {"id": "undone", "qty": 1})
        tx.execute("UPDATE items SET qty = -1 WHERE id = 'undone'")  # the CHECK refuses it

    def raises(tx):
        tx.insert("items", {"id": "also-undone", "qty": 1})
        raise ValueError("no such bill")

    jobs = [insert("a"), half_then_fail, insert("b"), raises, insert("c")]
    outcomes, batches = queued_behind_a_writer(simple, jobs)
    assert batches == 1
    assert outcomes[0] == ("ok", "a") and outcomes[2] == ("ok", "b") and outcomes[4] == ("ok", "c")
    assert outcomes[1][0] == "error" and isinstance(outcomes[1][1], IntegrityError)
    assert outcomes[3][0] == "error" and str(outcomes[3][1]) == "no such bill"
    assert rows(simple) == {"a": 1, "b": 1, "c": 1}


def test_a_batch_that_cannot_commit_fails_every_job_in_it(simple):
    def ends_the_transaction(tx):
        tx.execute("ROLLBACK")  # what SQLite does itself on a full disk or an I/O error

    outcomes, batches = queued_behind_a_writer(simple, [insert("a"), ends_the_transaction, insert("b")])
    assert batches == 0
    assert {kind for kind, _ in outcomes.values()} == {"error"}
    assert rows(simple) == {}
    assert simple.write(insert("after")) == "after"  # the store is usable again
    assert rows(simple) == {"after": 1}


def test_a_job_runs_in_its_callers_context(simple):
    """Flask's request and g are context variables: a job run by another thread must see its caller's."""
    who = contextvars.ContextVar("who")
    outcomes = {}

    def submit(name):
        who.set(name)
        outcomes[name] = simple.write(lambda tx: who.get())

    holding, release = threading.Event(), threading.Event()

    def hold():
        with simple.transaction():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    threads = [threading.Thread(target=submit, args=(f"caller-{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    while len(simple._queue) < 6:
        time.sleep(0.005)
    release.set()
    for t in [holder, *threads]:
        t.join(10)
    assert outcomes == {f"caller-{n}": f"caller-{n}" for n in range(6)}


def test_many_threads_writing_at_once_lose_nothing(simple):
    def worker(n):
        for k in range(25):
            simple.write(insert(f"t{n}-{k}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(rows(simple)) == 200
    assert simple.batches <= 200


def test_write_inside_a_transaction_is_refused(simple):
    with simple.transaction():
        with pytest.raises(StoreError, match="already open"):
            simple.write(insert("x"))
    with pytest.raises(StoreError, match="already open"):
        simple.write(lambda tx: simple.write(insert("y")))
    assert rows(simple) == {}


@pytest.fixture
def locked_elsewhere(tmp_path):
    """Another program holds SQLite's write lock (without the store's writer lock)."""
    def lock(path):
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn
    return lock


def test_a_database_locked_elsewhere_raises_store_busy(simple, locked_elsewhere):
    quick = SQLiteStore(simple.path, busy_timeout_ms=50, migrations_dir=simple.migrations_dir)
    other = locked_elsewhere(simple.path)
    try:
        with pytest.raises(StoreBusy):
            quick.write(insert("x"))
        with pytest.raises(StoreBusy):
            with quick.transaction() as tx:
                tx.insert("items", {"id": "y", "qty": 1})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert quick.write(insert("z")) == "z"
    quick.close()
    assert rows(simple) == {"z": 1}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # SQLite's busy timeout; PostgreSQL's: test_multi_node
def test_a_busy_database_answers_503_with_retry_after_and_moves_nothing(
        app, world, config, clock, store, locked_elsewhere):
    world.top_up("a", 1000)
    merchant_id, _ = world.merchant("x")
    _, wallet = world.wallet("a")
    quick = SQLiteStore(config.db_path, synchronous="NORMAL", busy_timeout_ms=50)
    app.extensions["tapstack"] = Runtime(config, quick, clock)
    other = locked_elsewhere(config.db_path)
    try:
        response = wallet.post("/v1/payments", {"merchant_id": merchant_id, "amount": 300, "currency": "CNY"},
                               key="pay-while-busy")
        body = error(response, 503, "api_error", "store_busy")
        assert "Retry" in body["message"]
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    # the same key, once the database is free, pays once
    again = wallet.post("/v1/payments", {"merchant_id": merchant_id, "amount": 300, "currency": "CNY"},
                        key="pay-while-busy")
    assert ok(again, 201)["amount"] == 300
    assert world.available("a") == 700
    quick.close()


def test_a_new_database_takes_the_page_size_asked(tmp_path):
    store = SQLiteStore(tmp_path / "small.db", page_size=1024, migrations_dir=tmp_path / "none")
    assert store.db.conn.execute("PRAGMA page_size").fetchone()[0] == 1024
    store.close()
    again = SQLiteStore(tmp_path / "small.db", page_size=8192, migrations_dir=tmp_path / "none")
    assert again.db.conn.execute("PRAGMA page_size").fetchone()[0] == 1024  # fixed once made
    again.close()
    with pytest.raises(StoreError, match="page_size"):
        SQLiteStore(tmp_path / "bad.db", page_size=1000)
