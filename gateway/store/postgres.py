"""The PostgreSQL backend: many gateway nodes on one database (see gateway.store).

Connections come from a psycopg_pool pool made in each process on first use (so
a store made before gunicorn forks is safe). The query modules' portable SQL, with
`:name` parameters, is translated once to psycopg's and bound on the server: each
statement is prepared at its first run on a connection and then runs by name (one
round trip, no parsing or planning again). A parameter PostgreSQL cannot type from
its place (`:x IS NULL` alone) is cast in the SQL. Whole NUMERIC values (what SUM
over BIGINT gives) come back as int, as SQLite gives them.

Isolation. write() and transaction() run at READ COMMITTED, the database's
default: no global lock, each rule held by constraints, conditional updates and
row locks in the query modules. read() runs REPEATABLE READ READ ONLY: one
snapshot for the whole block.

Faults. write() runs its job again after a serialisation failure or deadlock
(up to RETRIES times, with a short random pause); one that still fails, a lock
or statement timeout, a pool with no free connection in time, or a database out
of reach is StoreBusy / StoreUnavailable, which the API answers 503 with
Retry-After. A connection lost before anything was sent is retried on a fresh
one; a connection lost later is not (the caller's Idempotency-Key makes its
retry safe). Durability is the server's: synchronous_commit on (the default)
means a commit returned is on disk, and on a synchronous standby when the
server is set up with one (docs/scale-out.md).

Migrations run only when asked (`tapstack gateway migrate`), under an advisory
lock, so nodes starting together apply each one once.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar

import psycopg
from psycopg import errors as pg
from psycopg.rows import dict_row
from psycopg.types.numeric import NumericLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.store import migrations as _migrations
from gateway.store.errors import IntegrityError, StoreBusy, StoreError, StoreUnavailable
from gateway.store.migrations import MIGRATIONS_DIR, Migration, find_migrations, split_statements
from gateway.store.url import redact

T = TypeVar("T")
RETRIES = 8
MIGRATION_LOCK = 0x7461_7073  # pg_advisory_xact_lock key while migrating ("taps")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# a quoted string, a :: cast, or a :name parameter; everything else is copied as is
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|:([A-Za-z_][A-Za-z0-9_]*)|%")


class _Retry(StoreBusy):
    """A serialisation failure or deadlock: the transaction was rolled back and may run again."""


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """Portable `:name` parameters as psycopg's `%(name)s`; every literal % (in quotes
    too: psycopg reads the whole text for placeholders) as %%."""
    def one(match: re.Match) -> str:
        if match.group(1):
            return f"%({match.group(1)})s"
        return match.group(0).replace("%", "%%")
    return _TOKENS.sub(one, sql)


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    bad = [n for n in (table, *columns) if not _IDENTIFIER.match(n)]
    if bad:
        raise StoreError(f"not a plain SQL identifier: {bad[0]!r}")
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(f'%({c})s' for c in columns)})"


# Server-side binding: statements prepared at their first run on a connection and kept
# (the gateway has a few hundred distinct ones). bench/pg_binding_bench.py sets
# psycopg.ClientCursor and None to measure client-side binding beside it.
CURSOR = psycopg.Cursor
PREPARE_THRESHOLD: int | None = 0
PREPARED_MAX = 512
INSERT_ROWS = 100  # rows per multi-row INSERT of insert_many


@functools.lru_cache(maxsize=256)
def _insert_rows_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    row = "(" + ", ".join("%s" for _ in columns) + ")"
    return _insert_sql(table, columns).split(" VALUES ")[0] + " VALUES " + ", ".join([row] * n)


class _WholeNumeric(NumericLoader):
    """NUMERIC as int when it is whole (sums of BIGINT money), else Decimal."""

    def load(self, data):
        value = super().load(data)
        return int(value) if value.is_finite() and value == value.to_integral_value() else value


class Tx:
    """One open transaction on a pooled connection; see gateway.store.Tx."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection, *, readonly: bool = False):
        self._conn = conn
        self._cursor = conn.cursor()
        self.readonly = readonly
        self._savepoints = 0

    def execute(self, sql: str, params: dict | None = None) -> int:
        self._check_writable()
        return self._run(translate(sql), params).rowcount

    def execute_many(self, sql: str, rows: list[dict]) -> int:
        self._check_writable()
        return self._run(translate(sql), rows, many=True).rowcount

    def query(self, sql: str, params: dict | None = None) -> list[dict]:
        cursor = self._run(translate(sql), params)
        return cursor.fetchall() if cursor.description is not None else []

    def one(self, sql: str, params: dict | None = None) -> dict | None:
        cursor = self._run(translate(sql), params)
        return cursor.fetchone() if cursor.description is not None else None

    def insert(self, table: str, row: dict) -> None:
        self._check_writable()
        self._run(_insert_sql(table, tuple(row)), row)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator["Tx"]:
        self._check_writable()
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        self._run(f"SAVEPOINT {name}", None)
        try:
            yield self
        except BaseException:
            if self._conn.info.transaction_status in (psycopg.pq.TransactionStatus.INTRANS,
                                                      psycopg.pq.TransactionStatus.INERROR):
                self._run(f"ROLLBACK TO SAVEPOINT {name}", None)
                self._run(f"RELEASE SAVEPOINT {name}", None)
            raise
        else:
            self._run(f"RELEASE SAVEPOINT {name}", None)
        finally:
            self._savepoints -= 1

    def insert_many(self, table: str, rows: list[dict]) -> None:
        self._check_writable()
        columns = tuple(rows[0]) if rows else ()
        for start in range(0, len(rows), INSERT_ROWS):
            chunk = rows[start:start + INSERT_ROWS]
            self._run(_insert_rows_sql(table, columns, len(chunk)), [row[c] for row in chunk for c in columns])

    def _run(self, sql: str, params: dict | list | None, *, many: bool = False) -> psycopg.Cursor:
        try:
            if many:  # psycopg pipelines the rows; rowcount is their sum
                self._cursor.executemany(sql, params)
                return self._cursor
            return self._cursor.execute(sql, params or None)
        except pg.IntegrityError as e:
            raise IntegrityError(str(e).strip()) from e
        except (pg.SerializationFailure, pg.DeadlockDetected) as e:
            raise _Retry(f"the database rolled the transaction back: {e.sqlstate} {str(e).strip()}") from e
        except pg.InternalError_ as e:
            if "multixact" not in str(e):
                raise StoreError(f"the database failed: {' '.join(str(e).split())}") from e
            # "new multixact has more than one updating member": seen rarely when a row that a
            # rolled-back savepoint updated is updated again while other transactions' foreign
            # key checks share-lock it. Nothing was committed; the whole transaction runs again.
            raise _Retry(f"the database rolled the transaction back: {e.sqlstate} {str(e).strip()}") from e
        except (pg.LockNotAvailable, pg.QueryCanceled) as e:
            raise StoreBusy(f"the database did not answer in time: {str(e).strip()}") from e
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"the database connection failed: {str(e).strip()}") from e
        except psycopg.Error as e:  # a statement the database refuses: a bug or a deployment fault
            raise StoreError(f"the database refused a statement: {' '.join(str(e).split())}") from e

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError("this is a read-only transaction (store.read()); use store.write() to write")


class PostgresStore:
    """The PostgreSQL store. `url` is a postgresql:// URL (libpq's forms)."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 5.0,
                 connect_timeout: int = 3, statement_timeout_ms: int = 30_000, lock_timeout_ms: int = 10_000,
                 migrate: bool = False, migrations_dir=None, application_name: str = "tapstack-gateway"):
        self.url = url
        self.shown_url = redact(url)
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.migrations_dir = migrations_dir or MIGRATIONS_DIR
        self._connect_options = {
            "connect_timeout": connect_timeout,
            "application_name": application_name,
            "options": f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}",
        }
        self._pool: ConnectionPool | None = None
        self._pool_pid: int | None = None
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self._down: str | None = None  # why the database was out of reach at the last try
        if migrate:
            self.migrate()

    # -- connections -------------------------------------------------------

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.adapters.register_loader("numeric", _WholeNumeric)
        conn.prepared_max = PREPARED_MAX

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None or self._pool_pid != os.getpid():
            with self._pool_lock:
                if self._pool is None or self._pool_pid != os.getpid():
                    self._down = self._probe()  # a database out of reach is said at once, with its reason
                    if self._down is not None:
                        raise StoreUnavailable(self._down)
                    # a pool inherited through fork belongs to the parent: make our own
                    self._pool = ConnectionPool(
                        self.url, min_size=1, max_size=self.pool_size, timeout=self.pool_timeout,
                        kwargs={**self._connect_options, "autocommit": True, "row_factory": dict_row,
                                "cursor_factory": CURSOR, "prepare_threshold": PREPARE_THRESHOLD},
                        configure=self._configure, open=False, name="tapstack")
                    self._pool.open(wait=False)
                    self._pool_pid = os.getpid()
        return self._pool

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection. While the database is known to be down, each request asks it
        directly (a refused connection answers at once) instead of waiting out the pool."""
        if self._down is not None:
            self._down = self._probe()
            if self._down is not None:
                raise StoreUnavailable(self._down)
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except PoolTimeout as e:
            self._down = self._probe()
            if self._down is not None:
                raise StoreUnavailable(self._down) from e
            raise StoreBusy(f"all {self.pool_size} database connections stayed in use for"
                            f" {self.pool_timeout:g} s") from e

    def _probe(self) -> str | None:
        """Why the database cannot be reached now, or None when it can."""
        try:
            psycopg.connect(self.url, **self._connect_options).close()
            return None
        except psycopg.Error as e:
            return f"cannot reach the database {self.shown_url}: {' '.join(str(e).split())}"

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool, self._pool_pid = None, None

    # -- transactions ------------------------------------------------------

    @contextlib.contextmanager
    def _begun(self, begin: str, *, readonly: bool = False) -> Iterator[Tx]:
        if getattr(self._local, "open", False):
            raise StoreError("a transaction is already open on this thread: pass its Tx down instead of opening another")
        self._local.open = True
        try:
            with self._fresh(begin) as conn:
                tx = Tx(conn, readonly=readonly)
                try:
                    yield tx
                except BaseException:
                    if not conn.closed and not conn.broken:
                        conn.execute("ROLLBACK")
                    raise
                if readonly:
                    conn.execute("ROLLBACK")
                else:
                    tx._run("COMMIT", None)
        finally:
            self._local.open = False

    @contextlib.contextmanager
    def _fresh(self, begin: str) -> Iterator[psycopg.Connection]:
        """A pooled connection with `begin` sent. Pooled connections die with a database
        restart; one that fails at BEGIN has done nothing, so the next one is tried."""
        for attempt in range(self.pool_size + 1):
            with contextlib.ExitStack() as stack:
                conn = stack.enter_context(self._connection())
                try:
                    conn.execute(begin)
                except psycopg.OperationalError as e:
                    if attempt == self.pool_size or not conn.broken:
                        raise StoreUnavailable(f"the database connection failed: {str(e).strip()}") from e
                    continue  # leaving the stack hands the broken connection back, and the pool drops it
                yield conn
                return

    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        return self._begun("BEGIN")

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._begun("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", readonly=True)

    def write(self, job: Callable[[Tx], T]) -> T:
        for attempt in range(RETRIES + 1):
            try:
                with self._begun("BEGIN") as tx:
                    return job(tx)
            except _Retry:
                if attempt == RETRIES:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 5)))
        raise AssertionError("unreachable")

    # -- migrations --------------------------------------------------------

    def migrate(self) -> list[Migration]:
        known = find_migrations(self.migrations_dir, self.dialect)
        with self.transaction() as tx:
            tx.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                       " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)")
        applied = []
        for migration in known:
            statements = split_statements(migration.sql)
            with self.transaction() as tx:
                tx.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                if tx.one("SELECT 1 FROM schema_migrations WHERE version = :v", {"v": migration.version}):
                    continue
                for statement in statements:
                    try:
                        with tx.savepoint():
                            tx._run(statement, None)  # raw: migrations carry no parameters
                    except (IntegrityError, StoreError) as e:
                        raise StoreError(f"migration {migration.path.name} failed: {e}: {statement[:120]!r}") from e
                tx.insert("schema_migrations", {
                    "version": migration.version, "name": migration.name, "checksum": migration.checksum,
                    "applied_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
            applied.append(migration)
        return applied

    def applied_migrations(self) -> list[dict]:
        with self.read() as tx:
            if tx.one("SELECT to_regclass('schema_migrations') AS t")["t"] is None:
                return []
            return tx.query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")

    def migration_problems(self) -> list[str]:
        return _migrations.problems(find_migrations(self.migrations_dir, self.dialect), self.applied_migrations())
