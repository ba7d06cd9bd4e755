"""The two databases the gateway suite runs on, behind one small interface.

SQLite: each test gets a copy of a template data directory, database included.
PostgreSQL: one database for the suite, migrated once; the template's rows are
kept in a schema of their own and put back before each test (a few milliseconds,
where a database made from a template takes about 170).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from gateway.config import Config
from gateway.store import MIGRATIONS_DIR

BACKENDS = ("sqlite", "postgresql")


class SQLiteBackend:
    name = "sqlite"

    def config(self, data_dir: Path) -> Config:
        return Config(data_dir)

    def store(self, config: Config, **options):
        from gateway.store.sqlite import SQLiteStore
        return SQLiteStore(config.db_path, **{"synchronous": "NORMAL", **options})

    def ledger_store(self, directory: Path, **options):
        """A store with the ledger migration only: the ledger's tests put nothing else under test."""
        from gateway.store.sqlite import SQLiteStore
        migrations = Path(directory) / "migrations"
        migrations.mkdir()
        shutil.copy(MIGRATIONS_DIR / "0001_ledger.sql", migrations)
        return SQLiteStore(Path(directory) / "gateway.db", migrations_dir=migrations, **options)

    def keep_template(self) -> None:
        """The template lives in its data directory, copied per test."""

    def restore_template(self) -> None:
        """Nothing: the test's data directory is a fresh copy."""

    def empty(self) -> None:
        """Nothing: a new data directory holds a new database."""


class PostgresBackend:
    name = "postgresql"

    def __init__(self, cluster):
        from gateway.store.postgres import PostgresStore
        self.cluster = cluster
        self.url = cluster.create_database("gateway_suite")
        PostgresStore(self.url, migrate=True).close()
        self.ledger_url = cluster.create_database("ledger_suite")
        with _only_ledger_migration() as directory:
            PostgresStore(self.ledger_url, migrate=True, migrations_dir=directory).close()
        self._restore_migrated = self._snapshot("migrated_rows")
        self._restore_template = None

    def config(self, data_dir: Path) -> Config:
        return Config(data_dir, database_url=self.url)

    def store(self, config: Config, **options):
        from gateway.store.postgres import PostgresStore
        options.pop("synchronous", None)  # SQLite's; the cluster is set for speed
        return PostgresStore(self.url, **options)

    def ledger_store(self, directory: Path, **options):
        from gateway.store.postgres import PostgresStore
        self._run(self.ledger_url, "TRUNCATE ledger_postings, ledger_transfers, ledger_accounts")
        options.pop("synchronous", None)
        return PostgresStore(self.ledger_url, **options)

    def keep_template(self) -> None:
        """Keep every table's rows as they are now, to be put back before each test."""
        self._restore_template = self._snapshot("template_rows")

    def restore_template(self) -> None:
        self._run(self.url, self._restore_template)

    def empty(self) -> None:
        """The database as migrations left it (their seeded rows, such as counters, and
        nothing else): a gateway with nothing in it yet, its secrets made anew."""
        self._run(self.url, self._restore_migrated)

    def _snapshot(self, schema: str) -> str:
        """Copy every table's rows into `schema`; the SQL that puts them back."""
        tables = self._tables()
        copy = [f"DROP SCHEMA IF EXISTS {schema} CASCADE", f"CREATE SCHEMA {schema}"]
        copy += [f"CREATE TABLE {schema}.{t} AS SELECT * FROM public.{t}" for t in tables]
        self._run(self.url, ";\n".join(copy))
        restore = ["SET session_replication_role = replica"]
        restore += [f"DELETE FROM public.{t}" for t in tables]
        restore += [f"INSERT INTO public.{t} SELECT * FROM {schema}.{t}" for t in tables]
        restore.append("SET session_replication_role = DEFAULT")
        return ";\n".join(restore)

    def _tables(self) -> list[str]:
        import psycopg
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations' ORDER BY table_name").fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _run(url: str, sql: str) -> None:
        import psycopg
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)


class _only_ledger_migration:
    def __enter__(self) -> Path:
        import tempfile
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-migrations-"))
        shutil.copy(MIGRATIONS_DIR / "0001_ledger.sql", self.dir)
        return self.dir

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
