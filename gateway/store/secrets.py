"""The gateway's named secrets, sealed, in the database (table gateway_secrets)."""
from __future__ import annotations


def add_if_missing(tx, *, name: str, sealed: str, now_unix: int) -> None:
    """Store `sealed` under `name` unless a value is there already (the first writer wins)."""
    tx.execute(
        "INSERT INTO gateway_secrets (name, sealed, created_at) VALUES (:name, :sealed, :at)"
        " ON CONFLICT (name) DO NOTHING",
        {"name": name, "sealed": sealed, "at": now_unix})


def sealed_value(tx, name: str) -> str | None:
    row = tx.one("SELECT sealed FROM gateway_secrets WHERE name = :name", {"name": name})
    return row["sealed"] if row else None
