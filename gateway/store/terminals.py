"""Terminal queries. Owns `terminals` (migration 0002); gateway/services/terminals.py and
gateway/auth.py decide. A terminal's secret is never stored (see services/terminals.py)."""
from __future__ import annotations


def insert_terminal(tx, *, id: str, key_id: str, merchant_id: str, name: str | None, status: str,
                    created_at: int) -> None:
    tx.execute("INSERT INTO terminals (id, key_id, merchant_id, name, status, created_at)"
               " VALUES (:id, :key_id, :merchant_id, :name, :status, :created_at)",
               {"id": id, "key_id": key_id, "merchant_id": merchant_id, "name": name, "status": status,
                "created_at": created_at})


def terminal(tx, terminal_id: str) -> dict | None:
    return tx.one("SELECT * FROM terminals WHERE id = :id", {"id": terminal_id})


def active_terminal_by_key_id(tx, key_id: str) -> dict | None:
    """id and merchant_id of the active terminal signing with this key id."""
    return tx.one("SELECT id, merchant_id FROM terminals WHERE key_id = :k AND status = 'active'", {"k": key_id})
