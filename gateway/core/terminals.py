"""Terminals: a merchant's tills and validators, which sign their requests.

A terminal's secret is never stored: it is HMAC(terminal_master, key_id), derived
by the caller (gateway.http.auth.terminal_secret) and handed out once at registration.
"""
from __future__ import annotations

import secrets
from datetime import datetime

from gateway.core import iso, new_id, unix
from gateway.core.caller import Caller
from gateway.core.errors import Conflict, not_found
from gateway.store import merchants as merchants_db
from gateway.store import terminals as terminals_db


def terminal_view(row: dict) -> dict:
    return {"id": row["id"], "object": "terminal", "merchant_id": row["merchant_id"],
            "key_id": row["key_id"], "name": row["name"], "status": row["status"],
            "suspended_at": iso(row["suspended_at"]) if row.get("suspended_at") else None,
            "created_at": iso(row["created_at"])}


def register_terminal(tx, *, merchant_id: str, name: str | None, now: datetime) -> dict:
    if merchants_db.merchant(tx, merchant_id) is None:
        raise not_found("merchant", "merchant_id")
    row = {"id": new_id("term"), "key_id": "tk_" + secrets.token_hex(16),
           "merchant_id": merchant_id, "name": name, "status": "active", "created_at": unix(now)}
    terminals_db.insert_terminal(tx, **row)
    return terminal_view(row)


def terminal_row(tx, caller: Caller, terminal_id: str) -> dict:
    """The terminal if the caller may see it: the operator, the owning merchant, the terminal itself."""
    row = terminals_db.terminal(tx, terminal_id)
    allowed = row is not None and (
        caller.kind == "operator"
        or (caller.kind == "merchant" and caller.id == row["merchant_id"])
        or (caller.kind == "terminal" and caller.id == row["id"]))
    if not allowed:
        raise not_found("terminal", "id")
    return row


def get_terminal(tx, caller: Caller, terminal_id: str) -> dict:
    return terminal_view(terminal_row(tx, caller, terminal_id))


# What each action does: (the status it moves to, the statuses it moves from). Revocation is
# final. A suspended terminal's signed requests, tap uploads included, are refused until it
# is resumed: its taps stay in its journal meanwhile (docs/security.md says why).
ACTIONS = {"suspend": ("suspended", ("active",)),
           "resume": ("active", ("suspended",)),
           "revoke": ("revoked", ("active", "suspended", "disabled"))}


def change_status(tx, caller: Caller, terminal_id: str, action: str, *, now: datetime) -> dict:
    """Suspend, resume or revoke the terminal (the operator or its merchant); 409 from a status
    the action does not apply to (a revoked terminal stays revoked)."""
    row = terminal_row(tx, caller, terminal_id)
    status, from_statuses = ACTIONS[action]
    suspended_at = unix(now) if status != "active" else None
    if not terminals_db.set_status(tx, terminal_id=terminal_id, status=status, from_statuses=from_statuses,
                                   suspended_at=suspended_at):
        raise Conflict("terminal_status", f"A {row['status']} terminal cannot be {action}d.", "terminal_id")
    return terminal_view({**row, "status": status, "suspended_at": suspended_at})
