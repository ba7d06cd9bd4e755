"""Merchants: each has a merchant ledger account and an API key ("sk_...") shown once."""
from __future__ import annotations

from datetime import datetime

from gateway import ledger
from gateway.auth import Caller, key_hash, new_key
from gateway.errors import not_found
from gateway.services import iso, new_id, unix
from gateway.store import merchants as merchants_db


def merchant_view(row: dict) -> dict:
    return {"id": row["id"], "object": "merchant", "name": row["name"],
            "currency": row["currency"], "created_at": iso(row["created_at"])}


def create_merchant(tx, *, name: str, currency: str, now: datetime) -> tuple[dict, str]:
    """A new merchant and its API key, which is stored only as a SHA-256 hash."""
    merchant_id = new_id("mer")
    account_id = ledger.open_account(tx, kind="merchant", currency=currency,
                                     owner_id=merchant_id, now=now)["id"]
    api_key = new_key("sk_")
    row = {"id": merchant_id, "name": name, "account_id": account_id, "currency": currency,
           "api_key_hash": key_hash(api_key), "created_at": unix(now)}
    merchants_db.insert_merchant(tx, **row)
    return merchant_view(row), api_key


def merchant_row(tx, caller: Caller, merchant_id: str, param: str = "id") -> dict:
    """The merchant if the caller may see it: the operator or the merchant itself."""
    row = merchants_db.merchant(tx, merchant_id)
    if row is None or not (caller.kind == "operator" or
                           (caller.kind == "merchant" and caller.id == merchant_id)):
        raise not_found("merchant", param)
    return row


def payee(tx, merchant_id: str, param: str = "merchant_id") -> dict:
    """Any merchant, as the receiver of a payment (a payer may name any merchant)."""
    row = merchants_db.merchant(tx, merchant_id)
    if row is None:
        raise not_found("merchant", param)
    return row
