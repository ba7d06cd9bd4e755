"""The gateway's store: every byte of SQL the gateway runs lives in this package.

Two backends give the same interface:

- `SQLiteStore` (store/sqlite.py), the embedded default: one file under the data
  directory, WAL, synchronous=FULL, one writer at a time with group commit.
- `PostgresStore` (store/postgres.py), for deployments that outgrow one machine:
  many gateway nodes on one PostgreSQL, through psycopg 3 and a connection pool.

`open_store(url, data_dir)` picks one from a database URL (see store/url.py).

Services never write SQL. They call the named functions of the query modules
beside this file, one per area, each owning its tables (ledger, payments, bills,
taps, webhooks, issuer, auth, dashboard, ...), passing an open `Tx` and plain
values and getting plain values back. The query modules write portable SQL
with named parameters (`:name`); where the dialects differ they say so with
`tx.dialect`, in the open, at the one statement that differs.

No rule may depend on there being one writer: the SQLite backend happens to
serialise writes, PostgreSQL does not. Overdraft, idempotency, tap
deduplication, counters and outbox leases hold through constraints,
conditional updates (`UPDATE ... WHERE balance >= :amount`), `INSERT ... ON
CONFLICT`, and row locks (`FOR UPDATE`, `FOR UPDATE SKIP LOCKED` for leases),
which the query modules spell per dialect.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Protocol, TypeVar

from gateway.store.errors import IntegrityError, StoreBusy, StoreError, StoreUnavailable
from gateway.store.migrations import MIGRATIONS_DIR, Migration, find_migrations, split_statements

T = TypeVar("T")

__all__ = [
    "Tx", "Store", "open_store", "SQLiteStore", "PostgresStore",
    "StoreError", "StoreBusy", "StoreUnavailable", "IntegrityError",
    "MIGRATIONS_DIR", "Migration", "find_migrations", "split_statements",
]


class Tx(Protocol):
    """One open transaction. Parameters are named (`:name`) and passed as a dict.

    `dialect` is "sqlite" or "postgresql", for the few statements that differ.
    A statement that breaks a constraint raises `IntegrityError`; inside a
    `savepoint()` only that savepoint's work is undone.
    """

    dialect: str
    readonly: bool

    def execute(self, sql: str, params: dict | None = None) -> int:
        """Run one statement; the number of rows it changed."""

    def execute_many(self, sql: str, rows: list[dict]) -> int:
        """Run one statement once per parameter dict (a bulk write: one round of the
        driver's, not a statement per row); the number of rows changed in all."""

    def query(self, sql: str, params: dict | None = None) -> list[dict]:
        """Every row the statement returns, as dicts keyed by column name."""

    def one(self, sql: str, params: dict | None = None) -> dict | None:
        """The first row the statement returns, or None."""

    def insert(self, table: str, row: dict) -> None:
        """Insert one row; its columns are the dict's keys."""

    def insert_many(self, table: str, rows: list[dict]) -> None:
        """Insert the rows (dicts with the same keys, the columns) in as few round trips as the
        backend allows: SQLite runs one prepared INSERT per row, PostgreSQL multi-row INSERTs."""

    def savepoint(self) -> contextlib.AbstractContextManager["Tx"]:
        """Nested all-or-nothing work: on an exception everything inside is undone and it re-raises."""


class Store(Protocol):
    """Where the gateway's state lives. Each way in states what it guarantees.

    Guarantees common to both backends: a write is durable once the call that
    made it returns (SQLite synchronous=FULL, PostgreSQL synchronous_commit on);
    constraints hold at every commit; the store never hands a caller a driver's
    exception: a constraint is IntegrityError, a database too busy or briefly
    unreachable is StoreBusy (answered 503 with Retry-After), a misuse or broken
    schema is StoreError.
    """

    dialect: str

    def write(self, job: Callable[[Tx], T]) -> T:
        """Run `job(tx)` in a transaction and return its result once committed.

        Isolation: SQLite runs writers one at a time (the job sees no
        concurrent change), sharing one commit among the jobs queued at that
        moment, each in its own savepoint. PostgreSQL runs it at READ
        COMMITTED beside other writers: each statement sees what was
        committed before it began, and a row it changed or locked stays
        locked until commit. A serialisation failure or deadlock rolls the
        transaction back and runs `job` again, a bounded number of times, so
        `job` must touch nothing but `tx`. If `job` raises, nothing it did
        takes effect and the exception is raised here.
        """

    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction around a block (for tools: a block cannot be re-run).

        Isolation as write(); a serialisation failure or deadlock is not
        retried but raised as StoreBusy. Any exception rolls everything back.
        """

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A read-only transaction over one consistent snapshot of the database
        (SQLite: a WAL read transaction; PostgreSQL: REPEATABLE READ READ ONLY)."""

    def migrate(self) -> list[Migration]:
        """Apply the migrations not applied yet, in order, each in its own transaction;
        safe from several processes or nodes at once. Returns those this call applied."""

    def applied_migrations(self) -> list[dict]:
        """Rows of schema_migrations (version, name, checksum, applied_at), oldest first."""

    def migration_problems(self) -> list[str]:
        """Why this code should not serve this database: migrations not applied,
        changed since applied, or applied by a newer tapstack. Empty when in step."""

    def close(self) -> None:
        """Close every connection this process opened."""


def open_store(url: str | None, data_dir=None, **options: Any) -> Store:
    """The store a database URL names (None: SQLite in `data_dir`); see store/url.py."""
    from gateway.store.url import open_store as _open
    return _open(url, data_dir, **options)


def __getattr__(name: str):
    # The backends load on first use, so a program on one backend never imports the other's driver.
    if name == "SQLiteStore":
        from gateway.store.sqlite import SQLiteStore
        return SQLiteStore
    if name == "PostgresStore":
        from gateway.store.postgres import PostgresStore
        return PostgresStore
    raise AttributeError(f"module 'gateway.store' has no attribute {name!r}")

