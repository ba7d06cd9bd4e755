"""The embedded backend: SQLite through sqlite-utils (see gateway.store for the interface).

`SQLiteStore.transaction()`, `.write(job)` and `.read()` each give a `Tx` with
`execute`, `query`, `one`, `insert` and `savepoint`; the query modules write
portable SQL with named parameters (`:name`).

Durability. The database runs in WAL mode. `synchronous="FULL"` (the default)
syncs the WAL on every commit: a committed transaction survives power loss.
`synchronous="NORMAL"` syncs only at checkpoints: a committed transaction
survives a crash of the process, but the last commits may be lost on power
loss or an OS crash (the database itself stays consistent).

Group commit. `write(job)` queues `job(tx)` for the next batch: one thread of
the process (the first caller to find no batch running) opens one transaction,
runs each queued job inside its own SAVEPOINT (a job that raises undoes only
its own work and gets its exception back), commits the batch with one fsync and
only then hands every caller its result. A batch takes what is queued, up to
BATCH_JOBS jobs or BATCH_SECONDS of work; an idle store adds no wait.

Writers never sleep in SQLite's busy handler. Every write transaction (a batch
or `transaction()`) holds the writer lock from `BEGIN IMMEDIATE` to `COMMIT`: a
threading.Lock inside the process and an flock on `<database>.writelock` across
processes (gunicorn workers, CLI tools), both of which wake the next waiter at
once. A database still locked after `busy_timeout_ms` (a program that writes
without this lock, or a queue that long) raises StoreBusy, which the API
answers with 503 and Retry-After.

Concurrency. One write connection per process, used only by the holder of the
writer lock (so its page cache stays warm whichever thread writes), and one
query-only connection per thread for `read()`; all are per process, so a Store
made before gunicorn forks is safe. Flask threads, gunicorn workers and test
threads can share one Store object, and a thread's connections close when the
thread ends. Readers get a consistent snapshot (`BEGIN DEFERRED`; WAL lets
them run beside a writer).

Migrations. Numbered files `gateway/store/migrations/NNNN_name.sql` are applied
in order, once each, each in its own transaction, and recorded in
`schema_migrations` (see gateway/store/migrations.py and migrations/README.md).
"""
from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import os
import re
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import sqlite_utils

from gateway.store import migrations as _migrations
from gateway.store.errors import IntegrityError, StoreBusy, StoreError
from gateway.store.migrations import MIGRATIONS_DIR, Migration, find_migrations, split_statements

SYNCHRONOUS_LEVELS = ("FULL", "NORMAL", "EXTRA")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BATCH_JOBS = 64         # at most this many jobs share one commit
BATCH_SECONDS = 0.002   # ... or this much work, so one batch never holds the lock long
DEFAULT_PAGE_SIZE = 4096
_BUSY_CODES = {getattr(sqlite3, "SQLITE_BUSY", 5), getattr(sqlite3, "SQLITE_LOCKED", 6)}
T = TypeVar("T")


def _is_busy(error: BaseException) -> bool:
    return (isinstance(error, sqlite3.OperationalError)
            and getattr(error, "sqlite_errorcode", None) in _BUSY_CODES)


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

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, *, readonly: bool = False):
        self._conn = conn
        self.readonly = readonly
        self._savepoints = 0

    def execute(self, sql: str, params: dict | None = None) -> int:
        self._check_writable()
        return self._run(sql, params).rowcount

    def execute_many(self, sql: str, rows: list[dict]) -> int:
        self._check_writable()
        return self._run(sql, rows, many=True).rowcount

    def query(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self._run(sql, params)
        if cursor.description is None:
            return []
        keys = [d[0] for d in cursor.description]
        return [dict(zip(keys, row)) for row in cursor.fetchall()]

    def one(self, sql: str, params: dict | None = None) -> dict | None:
        cursor = self._run(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row))

    def insert(self, table: str, row: dict) -> None:
        """Insert one row; columns are the dict's keys."""
        self._check_writable()
        self._run(_insert_sql(table, tuple(row)), row)

    def insert_many(self, table: str, rows: list[dict]) -> None:
        self._check_writable()
        if rows:
            self._run(_insert_sql(table, tuple(rows[0])), rows, many=True)

    def _run(self, sql: str, params: dict | list[dict] | None, *, many: bool = False) -> sqlite3.Cursor:
        try:
            if many:
                return self._conn.executemany(sql, params)
            return self._conn.execute(sql, params or {})
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e
        except sqlite3.DatabaseError as e:  # busy, or a statement or file SQLite refuses
            if _is_busy(e):
                raise StoreBusy(f"the database stayed locked: {e}") from e
            raise StoreError(f"the database refused a statement: {e}") from e

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


class _WriterLock:
    """Who may write now: a threading.Lock among this process's threads, then an
    flock on a file beside the database among processes. Both hand the lock to
    the next waiter as soon as it is released (no polling, no sleeps)."""

    def __init__(self, path: Path):
        self.path = path
        self._pid = None
        self._lock = threading.Lock()
        self._fd = -1
        self._setup = threading.Lock()

    def _for_this_process(self) -> None:
        # flock belongs to an open file description, which fork shares: each
        # process needs its own descriptor (and a lock no parent thread held).
        with self._setup:
            if self._pid != os.getpid():
                self._lock = threading.Lock()
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()

    def acquire(self, timeout: float) -> None:
        if self._pid != os.getpid():
            self._for_this_process()
        if not self._lock.acquire(timeout=timeout):
            raise StoreBusy(f"no write turn within {timeout:g} s (this process's writers are queued that long)")
        try:
            # Another process holds it only for one transaction, which always ends
            # (a killed holder's lock is released by the kernel).
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()


class _Job:
    """One queued write: the function, the caller's context, and its outcome."""

    __slots__ = ("fn", "context", "result", "error", "state", "wake")

    def __init__(self, fn: Callable[[Tx], Any]):
        self.fn = fn
        self.context = contextvars.copy_context()  # so a Flask view sees its own request
        self.result = None
        self.error: BaseException | None = None
        self.state = "queued"  # queued -> lead (runs the next batch) or done
        self.wake = threading.Event()


class SQLiteStore:
    """The SQLite store. See the module docstring for durability and threading."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        page_size: int = DEFAULT_PAGE_SIZE,
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
        if page_size not in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
            raise StoreError(f"page_size must be a power of two from 512 to 65536, not {page_size!r}")
        self.page_size = page_size
        self.migrations_dir = Path(migrations_dir) if migrations_dir else MIGRATIONS_DIR
        self._local = threading.local()
        self._open: list[weakref.finalize] = []  # one per live connection, closes it
        self._open_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _WriterLock(Path(f"{self.path}.writelock"))
        self._writer_conn: _ThreadConnection | None = None
        self._queue: list[_Job] = []
        self._queue_lock = threading.Lock()
        self._leading = False
        self._queue_pid = os.getpid()
        self.batches = 0  # group commits made by this process (for benches and tests)
        # Open the file and turn WAL on under the writer lock: two processes creating
        # the database at once would otherwise race on the journal-mode switch.
        self._writer.acquire(self.busy_timeout_ms / 1000)
        try:
            self._database()
        except sqlite3.DatabaseError as e:  # not a database, or one SQLite cannot open
            raise StoreError(f"cannot open {self.path}: {e}") from e
        finally:
            self._writer.release()
        if migrate:
            self.migrate()

    # -- connections -------------------------------------------------------

    def _database(self) -> sqlite_utils.Database:
        mine = getattr(self._local, "connection", None)
        if mine is not None and mine.pid == os.getpid():
            return mine.db
        mine = self._connect(query_only=False)
        self._local.connection = mine
        return mine.db

    def _write_connection(self) -> sqlite3.Connection:
        """The process's one write connection. Only the holder of the writer lock uses
        it, so whichever thread writes, the pages it read last time are still cached."""
        mine = self._writer_conn
        if mine is None or mine.pid != os.getpid():
            mine = self._writer_conn = self._connect(query_only=False)
        return mine.db.conn

    def _reader(self) -> sqlite3.Connection:
        mine = getattr(self._local, "reader", None)
        if mine is not None and mine.pid == os.getpid():
            return mine.db.conn
        mine = self._connect(query_only=True)
        self._local.reader = mine
        return mine.db.conn

    def _connect(self, *, query_only: bool) -> _ThreadConnection:
        # isolation_level=None: the driver never opens transactions on its own;
        # transaction(), write() and read() say exactly where each begins and ends.
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,  # only so close() may close it from another thread
            cached_statements=256,
        )
        db = sqlite_utils.Database(conn)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute(f"PRAGMA page_size = {self.page_size}")  # takes effect only on a new database
        db.enable_wal()
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        if query_only:
            conn.execute("PRAGMA query_only = ON")  # for good: even a stray write through query() fails
        mine = _ThreadConnection(db, os.getpid())
        # When the thread ends its thread-local slot goes and the connection is
        # closed, so a server that makes a thread per request leaks nothing.
        with self._open_lock:
            self._open = [f for f in self._open if f.alive]
            self._open.append(weakref.finalize(mine, _close_in_owner, conn, mine.pid))
        return mine

    @property
    def open_connections(self) -> int:
        """Connections this Store holds open now: the writer's, and per live thread that
        used it at most one for read() and one for `db`."""
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
        self._writer_conn = None

    # -- transactions ------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """`BEGIN IMMEDIATE` ... `COMMIT` under the writer lock; `ROLLBACK` on any exception, which re-raises."""
        conn = self._begin_write()
        try:
            try:
                yield Tx(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_busy(e):
                    raise StoreBusy(f"the database stayed locked: {e}") from e
                raise
        finally:
            self._end_write()

    def write(self, job: Callable[[Tx], T]) -> T:
        """Run `job(tx)` in the next group commit and return what it returned, once committed.

        `job` runs inside its own savepoint of the batch's transaction, perhaps on
        another thread of this process but always in the calling thread's context
        (contextvars, so Flask's request and g are the caller's). If it raises,
        only its own work is undone and the exception is raised here. If the
        batch cannot commit, every job of it gets that error and none took effect.
        """
        if getattr(self._local, "writing", False):
            raise StoreError("a transaction is already open on this thread: pass its Tx down instead of writing apart")
        if self._queue_pid != os.getpid():
            self._reset_queue()
        me = _Job(job)
        with self._queue_lock:
            self._queue.append(me)
            if not self._leading:
                self._leading, me.state = True, "lead"
        while me.state != "done":
            if me.state == "lead":
                self._lead()
            else:
                me.wake.wait()
                me.wake.clear()
        if me.error is not None:
            raise me.error
        return me.result

    def _reset_queue(self) -> None:
        with self._open_lock:
            if self._queue_pid != os.getpid():  # forked: the parent's waiters are not ours
                self._queue, self._queue_lock, self._leading = [], threading.Lock(), False
                self._queue_pid = os.getpid()

    def _lead(self) -> None:
        """Run one batch of queued jobs on this thread (the leader's own job is at the head
        of the queue, so it is in it), then pass the lead to the oldest waiting job, or put
        it down when none waits."""
        batch: list[_Job] = []
        try:
            conn = self._begin_write()
        except BaseException as e:  # busy: nobody in this batch could write
            with self._queue_lock:
                batch, self._queue = self._queue[:BATCH_JOBS], self._queue[BATCH_JOBS:]
            self._finish(batch, e)
            return self._pass_lead()
        error = None
        try:
            started = time.perf_counter()
            while len(batch) < BATCH_JOBS and time.perf_counter() - started < BATCH_SECONDS:
                with self._queue_lock:
                    take = self._queue[:BATCH_JOBS - len(batch)]
                    del self._queue[:len(take)]
                if not take:
                    break
                batch += take  # taken jobs all get an outcome, even if the batch fails midway
                for job in take:
                    self._run_job(conn, job)
                    if not conn.in_transaction:  # SQLite gave up the whole transaction
                        error = job.error or StoreError("the batch's transaction ended inside a job")
                        break
                if error is not None:
                    break
            if error is None:
                conn.execute("COMMIT")
                self.batches += 1
        except BaseException as e:
            error = StoreBusy(f"the database stayed locked: {e}") if _is_busy(e) else e
        finally:
            if error is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            self._end_write()
        self._finish(batch, error)
        self._pass_lead()

    @staticmethod
    def _run_job(conn: sqlite3.Connection, job: _Job) -> None:
        conn.execute("SAVEPOINT job")
        try:
            job.result = job.context.run(job.fn, Tx(conn))
        except BaseException as e:
            job.error = e
            if conn.in_transaction:
                conn.execute("ROLLBACK TO SAVEPOINT job")
                conn.execute("RELEASE SAVEPOINT job")
            return
        conn.execute("RELEASE SAVEPOINT job")

    @staticmethod
    def _finish(batch: list[_Job], error: BaseException | None) -> None:
        """Hand each job its outcome: its own, or the batch's error when the batch did not commit."""
        for job in batch:
            if error is not None:
                job.result, job.error = None, error
            job.state = "done"
            job.wake.set()

    def _pass_lead(self) -> None:
        with self._queue_lock:
            if self._queue:
                nxt = self._queue[0]
                nxt.state = "lead"
                nxt.wake.set()
            else:
                self._leading = False

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only Tx over one consistent snapshot (`BEGIN DEFERRED` on a query-only connection)."""
        if getattr(self._local, "writing", False):
            raise StoreError("a transaction is already open on this thread: read through its Tx")
        conn = self._reader()
        try:
            conn.execute("BEGIN DEFERRED")
        except sqlite3.OperationalError as e:
            if _is_busy(e):
                raise StoreBusy(f"the database stayed locked: {e}") from e
            raise
        try:
            yield Tx(conn, readonly=True)
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _begin_write(self) -> sqlite3.Connection:
        """The write connection in `BEGIN IMMEDIATE`, under the writer lock; _end_write() ends the turn."""
        if getattr(self._local, "writing", False):
            raise StoreError("a transaction is already open on this thread: pass its Tx down instead of opening another")
        self._writer.acquire(self.busy_timeout_ms / 1000)
        try:
            conn = self._write_connection()
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:
            self._writer.release()
            if _is_busy(e):
                raise StoreBusy(f"the database stayed locked: {e}") from e
            raise
        self._local.writing = True
        return conn

    def _end_write(self) -> None:
        self._local.writing = False
        self._writer.release()

    # -- migrations --------------------------------------------------------

    def migrate(self) -> list[Migration]:
        """Apply every migration not yet applied, in order, each in its own transaction.

        Safe to run from several processes at once: each migration is applied
        under the write lock after checking again that nobody applied it first.
        Returns the migrations this call applied.
        """
        with self.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        applied = []
        for migration in find_migrations(self.migrations_dir, self.dialect):
            statements = split_statements(migration.sql)
            with self.transaction() as tx:
                if tx.one("SELECT 1 FROM schema_migrations WHERE version = :v", {"v": migration.version}):
                    continue
                for statement in statements:
                    try:
                        tx.execute(statement)
                    except (sqlite3.Error, IntegrityError, StoreError) as e:
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
        """Migrations not applied yet, changed on disk since they were applied, or newer than this code."""
        return _migrations.problems(find_migrations(self.migrations_dir, self.dialect), self.applied_migrations())
