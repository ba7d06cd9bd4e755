"""Terminals: a merchant's tills and validators, which sign their requests.

A terminal's secret is never stored: it is HMAC(terminal_master, key_id), derived
by the caller (gateway.auth.terminal_secret) and handed out once at registration.
"""
from __future__ import annotations

import secrets
from datetime import datetime

from gateway.auth import Caller
from gateway.errors import not_found
from gateway.services import iso, new_id, unix
from gateway.store import merchants as merchants_db
from gateway.store import terminals as terminals_db


def terminal_view(row: dict) -> dict:
    return {"id": row["id"], "object": "terminal", "merchant_id": row["merchant_id"],
            "key_id": row["key_id"], "name": row["name"], "status": row["status"],
            "created_at": iso(row["created_at"])}


def register_terminal(tx, *, merchant_id: str, name: str | None, now: datetime) -> dict:
    if merchants_db.merchant(tx, merchant_id) is None:
        raise not_found("merchant", "merchant_id")
    row = {"id": new_id("term"), "key_id": "tk_" + secrets.token_hex(16),
           "merchant_id": merchant_id, "name": name, "status": "active", "created_at": unix(now)}
    terminals_db.insert_terminal(tx, **row)
    return terminal_view(row)


def get_terminal(tx, caller: Caller, terminal_id: str) -> dict:
    """Visible to the operator, the owning merchant and the terminal itself."""
    row = terminals_db.terminal(tx, terminal_id)
    allowed = row is not None and (
        caller.kind == "operator"
        or (caller.kind == "merchant" and caller.id == row["merchant_id"])
        or (caller.kind == "terminal" and caller.id == row["id"]))
    if not allowed:
        raise not_found("terminal", "id")
    return terminal_view(row)
