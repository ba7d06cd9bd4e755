"""Terminal queries. Owns `terminals` (migrations 0002, 0017); gateway/core/terminals.py and
gateway/http/auth.py decide. A terminal's secret is never stored (see core/terminals.py)."""
from __future__ import annotations


def insert_terminal(tx, *, id: str, key_id: str, merchant_id: str, name: str | None, status: str,
                    created_at: int) -> None:
    tx.execute("INSERT INTO terminals (id, key_id, merchant_id, name, status, created_at)"
               " VALUES (:id, :key_id, :merchant_id, :name, :status, :created_at)",
               {"id": id, "key_id": key_id, "merchant_id": merchant_id, "name": name, "status": status,
                "created_at": created_at})


def terminal(tx, terminal_id: str) -> dict | None:
    return tx.one("SELECT * FROM terminals WHERE id = :id", {"id": terminal_id})


def terminal_by_key_id(tx, key_id: str) -> dict | None:
    """id, merchant_id and status of the terminal signing with this key id."""
    return tx.one("SELECT id, merchant_id, status FROM terminals WHERE key_id = :k", {"k": key_id})


def set_status(tx, *, terminal_id: str, status: str, from_statuses: tuple[str, ...],
               suspended_at: int | None) -> bool:
    """Move the terminal to `status` if it is in one of from_statuses; whether it moved."""
    allowed = ", ".join(f"'{s}'" for s in from_statuses if s.isalpha())  # constants of core/terminals.py
    return tx.execute(f"UPDATE terminals SET status = :s, suspended_at = :at WHERE id = :id AND status IN ({allowed})",
                      {"s": status, "at": suspended_at, "id": terminal_id}) == 1
