"""Database URLs: which backend, and where.

    (none)                        SQLite at <data dir>/gateway.db, the embedded default
    sqlite:///relative/path.db    SQLite at a path relative to the working directory
    sqlite:////absolute/path.db   SQLite at an absolute path
    postgresql://user:pass@host:5432/dbname?sslmode=require
    postgresql:///dbname?host=/run/postgresql      (a unix socket)

`TAPSTACK_DATABASE_URL` is read by the commands when `--database` is not given.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.store.errors import StoreError

ENVIRONMENT = "TAPSTACK_DATABASE_URL"
DB_FILE = "gateway.db"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def from_environment(url: str | None) -> str | None:
    """`url` when given, else $TAPSTACK_DATABASE_URL, else None (SQLite under the data directory)."""
    return url or os.environ.get(ENVIRONMENT) or None


def backend(url: str | None) -> str:
    """ "sqlite" or "postgresql" for a URL; StoreError naming the accepted forms otherwise."""
    if not url:
        return "sqlite"
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    shown = f"scheme {scheme!r}" if scheme else f"{redact(url)!r}"
    raise StoreError(f"unknown database URL {shown}: use sqlite:///PATH or postgresql://USER@HOST/DBNAME")


def sqlite_path(url: str | None, data_dir) -> Path:
    """The SQLite file a URL names (None: gateway.db in `data_dir`)."""
    if not url:
        if data_dir is None:
            raise StoreError("no database URL and no data directory: say where the database is")
        return Path(data_dir) / DB_FILE
    path = url.split("://", 1)[1]
    if not path.startswith("/") or path == "/":
        raise StoreError(f"{url!r} names no file: write sqlite:///relative.db or sqlite:////absolute/path.db")
    path = path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs -> /abs
    return Path(path)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(url: str | None, data_dir=None, **options):
    """The store a URL names; options go to its constructor."""
    kind = backend(url)
    if kind == "sqlite":
        from gateway.store.sqlite import SQLiteStore
        return SQLiteStore(sqlite_path(url, data_dir), **options)
    from gateway.store.postgres import PostgresStore
    return PostgresStore(url, **options)
