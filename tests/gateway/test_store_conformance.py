"""The Store protocol, held by both backends: what gateway/store/__init__.py promises.

Each test runs on SQLite and on PostgreSQL, on a database of its own with one small
table, so that it shows the store's behaviour and nothing of the gateway's schema.
"""
from __future__ import annotations

import itertools
import threading
import time

import pytest

from gateway.store import IntegrityError, StoreBusy, StoreError, StoreUnavailable, open_store

ACCOUNTS = """
CREATE TABLE accounts (
    id       TEXT PRIMARY KEY,
    balance  BIGINT NOT NULL CHECK (balance >= 0)
);
"""
_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """make_store(migrations={name: sql}) -> a store on a new database of the test's backend."""
    made = []

    def make(migrations: dict[str, str] | None = None, **options):
        directory = tmp_path / f"m{len(made)}"
        directory.mkdir()
        for name, sql in (migrations or {"0001_accounts.sql": ACCOUNTS}).items():
            (directory / name).write_text(sql)
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/g{len(made)}.db"
        else:
            url = request.getfixturevalue("postgres").create_database(f"conformance_{next(_databases)}")
        store = open_store(url, migrations_dir=directory, **options)
        store.migrate()
        made.append(store)
        return store

    make.backend = request.param
    yield make
    for store in made:
        store.close()


def balances(store) -> dict[str, int]:
    with store.read() as tx:
        return {r["id"]: r["balance"] for r in tx.query("SELECT id, balance FROM accounts ORDER BY id")}


def test_write_returns_what_the_job_returned_once_committed(make_store):
    store = make_store()
    assert store.write(lambda tx: tx.insert("accounts", {"id": "a", "balance": 5}) or "done") == "done"
    assert balances(store) == {"a": 5}
    assert store.dialect == make_store.backend


def test_a_job_that_raises_leaves_nothing_and_its_exception_reaches_the_caller(make_store):
    store = make_store()

    def job(tx):
        tx.insert("accounts", {"id": "a", "balance": 5})
        raise LookupError("refused")

    with pytest.raises(LookupError, match="refused"):
        store.write(job)
    assert balances(store) == {}


def test_a_savepoint_undoes_only_its_own_work(make_store):
    store = make_store()

    def job(tx):
        tx.insert("accounts", {"id": "kept", "balance": 1})
        with pytest.raises(IntegrityError):
            with tx.savepoint():
                tx.insert("accounts", {"id": "gone", "balance": 1})
                tx.execute("UPDATE accounts SET balance = -1 WHERE id = 'kept'")  # breaks the CHECK
        tx.insert("accounts", {"id": "after", "balance": 2})  # the transaction carries on

    store.write(job)
    assert balances(store) == {"after": 2, "kept": 1}


def test_constraints_are_integrity_errors_whichever_driver(make_store):
    store = make_store()
    store.write(lambda tx: tx.insert("accounts", {"id": "a", "balance": 1}))
    with pytest.raises(IntegrityError):
        store.write(lambda tx: tx.insert("accounts", {"id": "a", "balance": 2}))
    with pytest.raises(IntegrityError):
        store.write(lambda tx: tx.execute("UPDATE accounts SET balance = balance - 5 WHERE id = 'a'"))
    assert balances(store) == {"a": 1}


def test_execute_counts_rows_and_returning_gives_them(make_store):
    store = make_store()

    def job(tx):
        tx.insert("accounts", {"id": "a", "balance": 10})
        tx.insert("accounts", {"id": "b", "balance": 10})
        changed = tx.execute("UPDATE accounts SET balance = balance + :n", {"n": 1})
        back = tx.query("UPDATE accounts SET balance = balance - :n WHERE id = :id RETURNING id, balance",
                        {"n": 3, "id": "b"})
        return changed, back

    assert store.write(job) == (2, [{"id": "b", "balance": 8}])


def test_execute_many_runs_the_statement_per_row_and_counts_all_it_changed(make_store):
    store = make_store()
    rows = [{"id": "a", "balance": 1}, {"id": "b", "balance": 2}, {"id": "a", "balance": 3}]
    insert = "INSERT INTO accounts (id, balance) VALUES (:id, :balance) ON CONFLICT (id) DO NOTHING"
    assert store.write(lambda tx: tx.execute_many(insert, rows)) == 2
    assert balances(store) == {"a": 1, "b": 2}
    with pytest.raises(IntegrityError):  # a constraint in any row: the whole job is undone
        store.write(lambda tx: tx.execute_many("UPDATE accounts SET balance = balance - :n WHERE id = :id",
                                               [{"id": "b", "n": 1}, {"id": "a", "n": 5}]))
    assert balances(store) == {"a": 1, "b": 2}


def test_insert_many_inserts_every_row_or_none(make_store):
    store = make_store()
    rows = [{"id": f"a{n:03d}", "balance": n} for n in range(250)]  # more than one multi-row INSERT
    store.write(lambda tx: tx.insert_many("accounts", rows))
    assert balances(store) == {row["id"]: row["balance"] for row in rows}
    with pytest.raises(IntegrityError):
        store.write(lambda tx: tx.insert_many("accounts", [{"id": "new", "balance": 1}, {"id": "a000", "balance": 1}]))
    assert len(balances(store)) == 250


def test_sums_of_money_come_back_as_int(make_store):
    store = make_store()
    store.write(lambda tx: [tx.insert("accounts", {"id": str(i), "balance": 10**12}) for i in range(3)])
    with store.read() as tx:
        row = tx.one("SELECT SUM(balance) AS total, COUNT(*) AS n, MAX(balance) AS top FROM accounts")
    assert row == {"total": 3 * 10**12, "n": 3, "top": 10**12}
    assert all(type(v) is int for v in row.values())


def test_text_with_percent_signs_colons_and_casts_passes_through(make_store):
    store = make_store()
    store.write(lambda tx: tx.insert("accounts", {"id": "50% off: a:b", "balance": 7}))
    with store.read() as tx:
        rows = tx.query("SELECT id FROM accounts WHERE id LIKE '50% off%' AND id = :id AND balance = :b",
                        {"id": "50% off: a:b", "b": 7})
        cast = tx.one("SELECT CAST(:n AS BIGINT) + 1 AS m", {"n": 41})
    assert rows == [{"id": "50% off: a:b"}]
    assert cast == {"m": 42}


def test_read_is_read_only(make_store):
    store = make_store()
    with pytest.raises(StoreError):
        with store.read() as tx:
            tx.insert("accounts", {"id": "a", "balance": 1})
    assert balances(store) == {}


def test_a_read_sees_one_snapshot_while_writers_commit(make_store):
    store = make_store()
    store.write(lambda tx: tx.insert("accounts", {"id": "a", "balance": 1}))
    with store.read() as tx:
        first = tx.one("SELECT balance FROM accounts WHERE id = 'a'")["balance"]
        done = threading.Event()
        threading.Thread(target=lambda: (store.write(
            lambda w: w.execute("UPDATE accounts SET balance = 2 WHERE id = 'a'")), done.set())).start()
        assert done.wait(10)
        again = tx.one("SELECT balance FROM accounts WHERE id = 'a'")["balance"]
    assert (first, again) == (1, 1)
    assert balances(store) == {"a": 2}


def test_transaction_commits_or_rolls_back_the_block(make_store):
    store = make_store()
    with store.transaction() as tx:
        tx.insert("accounts", {"id": "a", "balance": 1})
    with pytest.raises(KeyError):
        with store.transaction() as tx:
            tx.insert("accounts", {"id": "b", "balance": 1})
            raise KeyError("no")
    assert balances(store) == {"a": 1}


def test_a_second_transaction_on_one_thread_is_a_misuse(make_store):
    store = make_store()
    with store.transaction():
        with pytest.raises(StoreError):
            with store.transaction():
                pass


def test_conditional_updates_never_overdraw_under_concurrent_writers(make_store):
    """Twenty writers at once each take 10 from 100 with `WHERE balance >= 10`: exactly ten succeed."""
    store = make_store()
    store.write(lambda tx: tx.insert("accounts", {"id": "a", "balance": 100}))
    outcomes, start = [], threading.Barrier(20)

    def spend():
        start.wait()
        outcomes.append(store.write(lambda tx: tx.execute(
            "UPDATE accounts SET balance = balance - 10 WHERE id = 'a' AND balance >= 10")))

    threads = [threading.Thread(target=spend) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [0] * 10 + [1] * 10
    assert balances(store) == {"a": 0}


def test_one_key_claimed_by_many_writers_at_once_is_claimed_once(make_store):
    store = make_store()
    start = threading.Barrier(8)
    claimed = []

    def claim(i):
        start.wait()
        rows = store.write(lambda tx: tx.query(
            "INSERT INTO accounts (id, balance) VALUES ('key', :i) ON CONFLICT (id) DO NOTHING RETURNING id",
            {"i": i}))
        claimed.append(len(rows))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [0] * 7 + [1]


def test_deadlocked_writers_are_run_again_and_both_finish(make_store):
    """Two jobs lock two rows in opposite orders. On PostgreSQL one of them is chosen as the
    deadlock's victim and run again by the store; on SQLite writers never overlap."""
    store = make_store()
    store.write(lambda tx: [tx.insert("accounts", {"id": i, "balance": 100}) for i in ("a", "b")])
    start, runs = threading.Barrier(2), []

    def move(first, second):
        def job(tx):
            runs.append(first)
            tx.execute("UPDATE accounts SET balance = balance - 1 WHERE id = :id", {"id": first})
            time.sleep(0.2)
            tx.execute("UPDATE accounts SET balance = balance + 1 WHERE id = :id", {"id": second})
        start.wait()
        store.write(job)

    threads = [threading.Thread(target=move, args=p) for p in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert balances(store) == {"a": 100, "b": 100}
    if make_store.backend == "postgresql":
        assert len(runs) >= 3  # the deadlock's victim ran again (and may meet the other once more)
    else:
        assert len(runs) == 2


def test_migrations_apply_once_and_a_newer_schema_is_named(make_store):
    store = make_store()
    assert store.migrate() == []
    assert store.migration_problems() == []
    with store.transaction() as tx:
        tx.insert("schema_migrations", {"version": 9999, "name": "from_the_future", "checksum": "x",
                                        "applied_at": "2030-01-01T00:00:00Z"})
    assert store.migration_problems() == [
        "migration 9999_from_the_future was applied by a newer tapstack than this one"]


def test_an_unreachable_database_is_unavailable_within_the_timeout(tmp_path):
    store = open_store(f"postgresql:///nowhere?host={tmp_path}&user=postgres", pool_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        store.write(lambda tx: tx.execute("SELECT 1"))
    assert time.monotonic() - started < 5
    assert isinstance(raised.value, StoreBusy)  # so the API answers 503 with Retry-After
    store.close()


def test_unknown_database_urls_are_refused_with_the_forms_to_use():
    with pytest.raises(StoreError, match=r"unknown database URL scheme 'mysql': use sqlite:///PATH or postgresql://"):
        open_store("mysql://root@localhost/db")


def test_postgresqls_multixact_failure_is_run_again_and_other_internal_errors_are_not():
    """XX000 "new multixact has more than one updating member" rolls the transaction back
    with nothing committed, so the store runs it again like a deadlock; any other internal
    error is a StoreError, never retried."""
    from psycopg import errors as pg

    from gateway.store import postgres

    class Refusing:
        def __init__(self, message):
            self.message = message

        def cursor(self):
            return self

        def execute(self, sql, params):
            raise pg.InternalError_(self.message)

    with pytest.raises(postgres._Retry):
        postgres.Tx(Refusing("new multixact has more than one updating member")).execute("UPDATE t SET n = 1")
    with pytest.raises(StoreError) as refused:
        postgres.Tx(Refusing("could not read block 7")).execute("UPDATE t SET n = 1")
    assert not isinstance(refused.value, postgres._Retry)


def test_a_migration_while_serving_does_not_break_statements_prepared_before_it(make_store):
    """PostgreSQL binds on the server and keeps each statement prepared per connection (one
    connection here, so the statements are the ones prepared before); a column added by
    `tapstack gateway migrate` while nodes run changes what `SELECT *` returns, and the
    prepared statements answer with it, as SQLite's do."""
    store = make_store(pool_size=1) if make_store.backend == "postgresql" else make_store()
    store.write(lambda tx: tx.insert("accounts", {"id": "a", "balance": 5}))
    for _ in range(3):  # prepared, and used prepared
        with store.read() as tx:
            assert tx.one("SELECT * FROM accounts WHERE id = :id", {"id": "a"}) == {"id": "a", "balance": 5}
    with store.transaction() as tx:
        tx.execute("ALTER TABLE accounts ADD COLUMN note TEXT")
    assert store.write(lambda tx: tx.one("SELECT * FROM accounts WHERE id = :id", {"id": "a"})) == {
        "id": "a", "balance": 5, "note": None}
    with store.read() as tx:
        assert tx.one("SELECT * FROM accounts WHERE id = :id", {"id": "a"})["note"] is None
