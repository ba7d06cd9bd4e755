"""The gateway's store: SQLite through sqlite-utils, behind a narrow interface.

Services see only `Store.transaction()` and `Store.read()`, each yielding a
`Tx` with `execute`, `query`, `one`, `insert` and `savepoint`, and write
portable SQL with named parameters (`:name`). A PostgreSQL store can be added
beside this one later with the same interface, without touching services.

Durability. The database runs in WAL mode. `synchronous="FULL"` (the default)
syncs the WAL on every commit: a committed transaction survives power loss.
`synchronous="NORMAL"` syncs only at checkpoints: a committed transaction
survives a crash of the process, but the last commits may be lost on power
loss or an OS crash (the database itself stays consistent).

Concurrency. One sqlite connection per thread (and per process, so a Store
made before gunicorn forks is safe), so Flask threads, gunicorn workers and
test threads can share one Store object; a thread's connection is closed when
the thread ends. Writers take the write lock at the
start (`BEGIN IMMEDIATE`) and wait up to `busy_timeout_ms` for it; readers get
a consistent snapshot (`BEGIN DEFERRED`; WAL lets them run beside a writer).

Migrations. Numbered files `gateway/migrations/NNNN_name.sql` are applied in
order, once each, each in its own transaction, and recorded in
`schema_migrations` (see gateway/migrations/README.md).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sqlite3
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlite_utils

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SYNCHRONOUS_LEVELS = ("FULL", "NORMAL", "EXTRA")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StoreError(Exception):
    """Misuse of the store or a broken migration (a programming or deployment error)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def find_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in `directory`, in order; other files are ignored."""
    found: dict[int, Migration] = {}
    for path in sorted(Path(directory).glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise StoreError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise StoreError(
                f"two migrations numbered {version:04d}: {found[version].path.name} and {path.name}"
            )
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a migration script into complete statements (triggers stay whole)."""
    statements, buffer = [], ""
    pieces = sql.split(";")
    for index, piece in enumerate(pieces):
        buffer += piece if index == len(pieces) - 1 else piece + ";"
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer).strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer).strip(" \t\r\n;"):
        raise StoreError(f"incomplete SQL statement at the end of the script: {buffer.strip()[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", "", sql, flags=re.S)
    return re.sub(r"--[^\n]*", "", sql)


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    bad = [n for n in (table, *columns) if not _IDENTIFIER.match(n)]
    if bad:
        raise StoreError(f"not a plain SQL identifier: {bad[0]!r}")
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"


class Tx:
    """One open transaction on this thread's connection.

    `execute` returns the row count, `query` a list of dicts, `one` a dict or
    None. Parameters are named (`:name`) and passed as a dict.
    """

    def __init__(self, conn: sqlite3.Connection, *, readonly: bool = False):
        self._conn = conn
        self.readonly = readonly
        self._savepoints = 0

    def execute(self, sql: str, params: dict | None = None) -> int:
        self._check_writable()
        return self._conn.execute(sql, params or {}).rowcount

    def query(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self._conn.execute(sql, params or {})
        if cursor.description is None:
            return []
        keys = [d[0] for d in cursor.description]
        return [dict(zip(keys, row)) for row in cursor.fetchall()]

    def one(self, sql: str, params: dict | None = None) -> dict | None:
        cursor = self._conn.execute(sql, params or {})
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row))

    def insert(self, table: str, row: dict) -> None:
        """Insert one row; columns are the dict's keys."""
        self._check_writable()
        self._conn.execute(_insert_sql(table, tuple(row)), row)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator["Tx"]:
        """Nested all-or-nothing work: on an exception everything inside is undone and it re-raises."""
        self._check_writable()
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self._conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self._conn.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError("this is a read-only transaction (store.read()); use store.transaction() to write")


@dataclass
class _ThreadConnection:
    db: sqlite_utils.Database
    pid: int


def _close_in_owner(conn: sqlite3.Connection, pid: int) -> None:
    if os.getpid() == pid:
        conn.close()


class Store:
    """The SQLite store. See the module docstring for durability and threading."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        migrate: bool = True,
        migrations_dir: str | os.PathLike | None = None,
    ):
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise StoreError("the store needs a file path: every thread opens its own connection to it")
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.migrations_dir = Path(migrations_dir) if migrations_dir else MIGRATIONS_DIR
        self._local = threading.local()
        self._open: list[weakref.finalize] = []  # one per live connection, closes it
        self._open_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._database()  # opens the file and turns WAL on, outside any transaction
        if migrate:
            self.migrate()

    # -- connections -------------------------------------------------------

    def _database(self) -> sqlite_utils.Database:
        mine = getattr(self._local, "connection", None)
        if mine is not None and mine.pid == os.getpid():
            return mine.db
        # isolation_level=None: the driver never opens transactions on its own;
        # transaction() and read() say exactly where each begins and ends.
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,  # only so close() may close it from another thread
        )
        db = sqlite_utils.Database(conn)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        db.enable_wal()
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        mine = _ThreadConnection(db, os.getpid())
        self._local.connection = mine
        # When the thread ends its thread-local slot goes and the connection is
        # closed, so a server that makes a thread per request leaks nothing.
        with self._open_lock:
            self._open = [f for f in self._open if f.alive]
            self._open.append(weakref.finalize(mine, _close_in_owner, conn, mine.pid))
        return db

    @property
    def open_connections(self) -> int:
        """Connections this Store holds open now (one per live thread that used it)."""
        with self._open_lock:
            return sum(f.alive for f in self._open)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's sqlite-utils Database (for tools and tests; services use transaction())."""
        return self._database()

    def close(self) -> None:
        """Close every connection this Store opened in this process (call once all threads are done).

        Connections inherited from a parent process are left alone: closing
        them here could disturb the parent's locks on the database.
        """
        with self._open_lock:
            finalizers, self._open = self._open, []
        for close in finalizers:
            close()
        self._local = threading.local()

    # -- transactions ------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """`BEGIN IMMEDIATE` ... `COMMIT`; `ROLLBACK` on any exception, which re-raises."""
        conn = self._begin("BEGIN IMMEDIATE")
        try:
            yield Tx(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only Tx over one consistent snapshot (`BEGIN DEFERRED`)."""
        conn = self._begin("BEGIN DEFERRED")
        conn.execute("PRAGMA query_only = ON")  # even a stray write through query() fails
        try:
            yield Tx(conn, readonly=True)
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("PRAGMA query_only = OFF")

    def _begin(self, statement: str) -> sqlite3.Connection:
        conn = self._database().conn
        if conn.in_transaction:
            raise StoreError("a transaction is already open on this thread: pass its Tx down instead of opening another")
        conn.execute(statement)
        return conn

    # -- migrations --------------------------------------------------------

    def migrate(self) -> list[Migration]:
        """Apply every migration not yet applied, in order, each in its own transaction.

        Safe to run from several processes at once: each migration is applied
        under the write lock after checking again that nobody applied it first.
        Returns the migrations this call applied.
        """
        conn = self._database().conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = []
        for migration in find_migrations(self.migrations_dir):
            statements = split_statements(migration.sql)
            with self.transaction() as tx:
                if tx.one("SELECT 1 FROM schema_migrations WHERE version = :v", {"v": migration.version}):
                    continue
                for statement in statements:
                    try:
                        tx.execute(statement)
                    except sqlite3.Error as e:
                        raise StoreError(f"migration {migration.path.name} failed: {e}: {statement[:120]!r}") from e
                tx.insert("schema_migrations", {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "applied_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                })
            applied.append(migration)
        return applied

    def applied_migrations(self) -> list[dict]:
        """Rows of schema_migrations (version, name, checksum, applied_at), oldest first."""
        conn = self._database().conn
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return []
        with self.read() as tx:
            return tx.query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")

    def migration_problems(self) -> list[str]:
        """Migrations not applied yet, or changed on disk since they were applied."""
        applied = {row["version"]: row for row in self.applied_migrations()}
        problems = []
        for migration in find_migrations(self.migrations_dir):
            row = applied.get(migration.version)
            if row is None:
                problems.append(f"migration {migration.path.name} is not applied")
            elif row["checksum"] != migration.checksum:
                problems.append(f"migration {migration.path.name} changed since it was applied on {row['applied_at']}")
        return problems
