"""The SQLite store: transactions, savepoints, read snapshots, threads and migrations."""
import shutil
import threading

import pytest

from gateway.store import MIGRATIONS_DIR, IntegrityError, SQLiteStore, StoreError, find_migrations, split_statements


def write_migrations(directory, files):
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


@pytest.fixture
def simple(tmp_path):
    """A Store over one tiny migration, so these tests depend on nothing else."""
    migrations = write_migrations(tmp_path / "migrations", {
        "0001_items.sql": "CREATE TABLE items (id TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0));",
    })
    store = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)
    yield store
    store.close()


def count(store):
    with store.read() as tx:
        return tx.one("SELECT COUNT(*) AS n FROM items")["n"]


def test_opens_in_wal_with_foreign_keys_and_the_asked_durability(tmp_path):
    for level in ("FULL", "NORMAL"):
        store = SQLiteStore(tmp_path / f"{level}.db", synchronous=level, migrations_dir=tmp_path / "none")
        conn = store.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == {"FULL": 2, "NORMAL": 1}[level]
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        store.close()


@pytest.mark.parametrize("path, kwargs, message", [
    (":memory:", {}, "file path"),
    ("x.db", {"synchronous": "OFF"}, "synchronous must be one of"),
])
def test_refuses_what_it_cannot_honour(tmp_path, path, kwargs, message):
    with pytest.raises(StoreError, match=message):
        SQLiteStore(path if path == ":memory:" else tmp_path / path, **kwargs)


def test_transaction_commits_and_rolls_back_on_any_exception(simple):
    with simple.transaction() as tx:
        tx.insert("items", {"id": "a", "qty": 1})
        assert tx.execute("UPDATE items SET qty = qty + 1 WHERE id = :id", {"id": "a"}) == 1
    with pytest.raises(RuntimeError):
        with simple.transaction() as tx:
            tx.insert("items", {"id": "b", "qty": 1})
            raise RuntimeError("boom")
    with simple.read() as tx:
        assert tx.query("SELECT id, qty FROM items") == [{"id": "a", "qty": 2}]
        assert tx.one("SELECT id FROM items WHERE id = :id", {"id": "b"}) is None


def test_savepoint_undoes_only_its_own_work(simple):
    with simple.transaction() as tx:
        tx.insert("items", {"id": "kept", "qty": 1})
        with pytest.raises(IntegrityError):
            with tx.savepoint():
                tx.insert("items", {"id": "undone", "qty": 1})
                tx.execute("UPDATE items SET qty = -1 WHERE id = 'kept'")  # violates the CHECK
        with tx.savepoint():
            with tx.savepoint():
                tx.insert("items", {"id": "nested", "qty": 3})
    with simple.read() as tx:
        assert tx.query("SELECT id, qty FROM items ORDER BY id") == [
            {"id": "kept", "qty": 1}, {"id": "nested", "qty": 3}]


def test_read_is_read_only(simple):
    with simple.read() as tx:
        with pytest.raises(StoreError, match="read-only"):
            tx.execute("DELETE FROM items")
        with pytest.raises(StoreError, match="read-only"):
            tx.insert("items", {"id": "x", "qty": 1})
        with pytest.raises(StoreError, match="readonly database"):  # a write through query(): SQLite refuses it
            tx.query("INSERT INTO items (id, qty) VALUES ('x', 1) RETURNING id")
    assert count(simple) == 0
    with simple.transaction() as tx:  # query_only is switched off again afterwards
        tx.insert("items", {"id": "y", "qty": 1})
    assert count(simple) == 1


def test_read_sees_one_snapshot_while_another_thread_commits(simple):
    with simple.transaction() as tx:
        tx.insert("items", {"id": "a", "qty": 1})

    def writer():
        with simple.transaction() as tx:
            tx.insert("items", {"id": "b", "qty": 1})

    with simple.read() as tx:
        first = tx.one("SELECT COUNT(*) AS n FROM items")["n"]
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        assert tx.one("SELECT COUNT(*) AS n FROM items")["n"] == first == 1
    assert count(simple) == 2


def test_nested_transaction_on_one_thread_is_refused(simple):
    with simple.transaction():
        with pytest.raises(StoreError, match="already open"):
            with simple.transaction():
                pass


def test_insert_refuses_identifiers_that_are_not_plain(simple):
    with simple.transaction() as tx:
        with pytest.raises(StoreError, match="identifier"):
            tx.insert("items; DROP TABLE items", {"id": "x"})
        with pytest.raises(StoreError, match="identifier"):
            tx.insert("items", {"id) VALUES ('x'); --": "x"})


def test_each_thread_gets_its_own_connection(simple):
    seen = []
    thread = threading.Thread(target=lambda: seen.append(simple.db.conn))
    thread.start()
    thread.join()
    assert seen[0] is not simple.db.conn
    assert simple.db.conn is simple.db.conn


def test_a_thread_that_ends_takes_its_connection_with_it(simple):
    """A server that makes a thread per request must not pile up open connections."""
    import gc

    def request():
        with simple.transaction() as tx:
            tx.execute("UPDATE items SET qty = qty + 1")

    for _ in range(20):
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
    gc.collect()
    assert simple.open_connections == 2  # the test thread's own and the process's writer
    simple.close()
    assert simple.open_connections == 0


def test_migrations_apply_in_order_once_across_reopen(tmp_path):
    migrations = write_migrations(tmp_path / "m", {
        "0002_more.sql": "ALTER TABLE a ADD COLUMN note TEXT;",
        "0001_first.sql": "-- the first table\nCREATE TABLE a (id TEXT PRIMARY KEY);",
        "notes.txt": "not a migration",
    })
    store = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)
    assert [m["version"] for m in store.applied_migrations()] == [1, 2]
    store.close()
    again = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)
    assert again.migrate() == []
    assert [m["name"] for m in again.applied_migrations()] == ["first", "more"]
    assert again.migration_problems() == []
    again.close()


def test_the_real_migrations_apply_once_across_reopen(tmp_path):
    store = SQLiteStore(tmp_path / "g.db")
    applied = store.applied_migrations()
    assert [m["version"] for m in applied] == [m.version for m in find_migrations(MIGRATIONS_DIR)]
    store.close()
    again = SQLiteStore(tmp_path / "g.db")
    assert again.applied_migrations() == applied
    again.close()


def test_a_failing_migration_rolls_back_whole_and_keeps_earlier_ones(tmp_path):
    migrations = write_migrations(tmp_path / "m", {
        "0001_ok.sql": "CREATE TABLE a (id TEXT PRIMARY KEY);",
        "0002_broken.sql": "CREATE TABLE b (id TEXT);\nCREATE TABLE a (id TEXT);",
    })
    with pytest.raises(StoreError, match="0002_broken.sql failed"):
        SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)
    (migrations / "0002_broken.sql").write_text("CREATE TABLE b (id TEXT);")
    store = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)  # b was rolled back, so this applies cleanly
    assert [m["version"] for m in store.applied_migrations()] == [1, 2]
    store.close()


def test_changed_and_unapplied_migrations_are_reported(tmp_path):
    migrations = write_migrations(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (id TEXT);"})
    store = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations)
    (migrations / "0001_a.sql").write_text("CREATE TABLE a (id TEXT, extra TEXT);")
    (migrations / "0002_b.sql").write_text("CREATE TABLE b (id TEXT);")
    later = SQLiteStore(tmp_path / "g.db", migrations_dir=migrations, migrate=False)
    problems = later.migration_problems()
    assert any("0001_a.sql changed" in p for p in problems)
    assert any("0002_b.sql is not applied" in p for p in problems)
    store.close()
    later.close()


def test_concurrent_starts_apply_each_migration_once(tmp_path):
    migrations = tmp_path / "m"
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("*.md"))
    errors, stores = [], []
    barrier = threading.Barrier(4)

    def start():
        barrier.wait()
        try:
            stores.append(SQLiteStore(tmp_path / "g.db", migrations_dir=migrations))
        except Exception as e:  # pragma: no cover - the assertion shows it
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stores[0].applied_migrations()) == len(find_migrations(migrations))
    for s in stores:
        s.close()


@pytest.mark.parametrize("files, message", [
    ({"1_short.sql": ""}, "not named NNNN_name.sql"),
    ({"0001_a.sql": "", "0001_b.sql": ""}, "two migrations numbered 0001"),
])
def test_badly_named_migrations_are_refused(tmp_path, files, message):
    with pytest.raises(StoreError, match=message):
        find_migrations(write_migrations(tmp_path / "m", files))


def test_split_statements_keeps_triggers_whole_and_drops_comments():
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (id TEXT, note TEXT DEFAULT 'a;b');
    /* block; comment */
    CREATE TRIGGER t_guard BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no'); END;
    """
    statements = split_statements(sql)
    assert len(statements) == 2
    assert "'a;b'" in statements[0]
    assert statements[1].startswith("/* block; comment */\n    CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(StoreError, match="incomplete"):
        split_statements("CREATE TABLE t (id TEXT)")


def test_a_forked_worker_opens_its_own_connection(simple):
    """As gunicorn forks workers after the app (and its Store) is made."""
    import os

    parent_conn = simple.db.conn
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            with simple.transaction() as tx:
                tx.insert("items", {"id": "from-worker", "qty": 1})
            code = 0 if simple.db.conn is not parent_conn else 2
            simple.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with simple.transaction() as tx:  # the parent's connection still works
        tx.insert("items", {"id": "from-parent", "qty": 1})
    assert count(simple) == 2
