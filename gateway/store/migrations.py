"""The numbered migration history both backends share.

Files `NNNN_name.sql` in gateway/store/migrations/ are applied in order, once
each. They are written in the SQL both dialects speak. Where a dialect needs
something else, a variant file `NNNN_name.<dialect>.sql` (dialect "sqlite" or
"postgresql") stands in for the common one on that backend, with the same
number and name: the differences are few and each is a file you can read.
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gateway.store.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
DIALECTS = ("sqlite", "postgresql")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgresql))?\.sql$")


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


def find_migrations(directory: Path = MIGRATIONS_DIR, dialect: str = "sqlite") -> list[Migration]:
    """The migrations in `directory` for `dialect`, in order; other files are ignored."""
    if dialect not in DIALECTS:
        raise StoreError(f"unknown dialect {dialect!r}")
    common: dict[int, Migration] = {}
    variants: dict[int, Migration] = {}
    for path in sorted(Path(directory).glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise StoreError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version, name, variant = int(match.group(1)), match.group(2), match.group(3)
        if variant is not None and variant != dialect:
            continue
        found = variants if variant else common
        if version in found:
            raise StoreError(
                f"two migrations numbered {version:04d}: {found[version].path.name} and {path.name}")
        found[version] = Migration(version, name, path)
    for version, variant in variants.items():
        if version in common and common[version].name != variant.name:
            raise StoreError(f"{variant.path.name} stands in for {common[version].path.name}: give it the same name")
    merged = {**common, **variants}
    return [merged[v] for v in sorted(merged)]


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


def problems(known: list[Migration], applied: list[dict]) -> list[str]:
    """Why code that knows `known` should not serve a database that applied `applied`."""
    by_version = {row["version"]: row for row in applied}
    found = []
    for migration in known:
        row = by_version.pop(migration.version, None)
        if row is None:
            found.append(f"migration {migration.path.name} is not applied")
        elif row["checksum"] != migration.checksum:
            found.append(f"migration {migration.path.name} changed since it was applied on {row['applied_at']}")
    for version, row in sorted(by_version.items()):
        found.append(f"migration {version:04d}_{row['name']} was applied by a newer tapstack than this one")
    return found
