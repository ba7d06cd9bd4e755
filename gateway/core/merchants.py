"""Merchants: each has a merchant ledger account and an API key ("sk_...") shown once.

A merchant's name may be in any script. When it is not in EMV's character set its QR
codes carry it in the language template (64) and, in field 59, the transliteration the
operator gave (`name_latin`) or the stated fallback (`protocol.emvqr.names`).
"""
from __future__ import annotations

from datetime import datetime

from gateway.core import iso, ledger, new_id, unix
from gateway.core.caller import Caller, key_hash, new_key
from gateway.core.errors import Invalid, not_found
from gateway.store import merchants as merchants_db
from gateway.store import wallet_views
from protocol import emvqr

COUNTRY = "CN"  # field 58 of the pilot's codes, and the city's stated fallback in field 60


def merchant_view(row: dict) -> dict:
    return {"id": row["id"], "object": "merchant", "name": row["name"], "name_latin": row.get("name_latin"),
            "language": row.get("name_language"), "currency": row["currency"], "created_at": iso(row["created_at"])}


def check_latin(value, limit: int, param: str) -> str | None:
    """The operator's transliteration for a QR field: 1 to `limit` characters of EMV's set."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not emvqr.is_ans(value):
        raise Invalid("invalid_parameter", f"{param} must be 1 to {limit} Latin letters, digits, spaces or "
                                           "punctuation: it is printed in QR codes beside the local name.", param)
    return value


def check_language(value) -> str | None:
    """The language of a name in a local script (EMVCo 64/00): two letters of ISO 639-1."""
    if value is None:
        return None
    try:
        return emvqr.check_language(value)
    except emvqr.QrFormatError:
        raise Invalid("invalid_parameter", "language must be two letters of ISO 639-1, such as zh.",
                      "language") from None


def code_names(tx, merchant_id: str, *, as_biller: bool, default_city: str | None = None) -> emvqr.Names:
    """What the merchant's QR codes show of its name and city (its biller city, or its shop
    city with `default_city` when it set none), local scripts in template 64."""
    row = wallet_views.merchant_names(tx, merchant_id)
    city, city_latin = ((row["biller_city"], row["biller_city_latin"]) if as_biller
                        else (row["shop_city"] or default_city, row["shop_city_latin"]))
    return emvqr.names(row["name"], city, name_latin=row["name_latin"], city_latin=city_latin,
                       language=row["name_language"], fallback_name=merchant_id, fallback_city=COUNTRY)


def create_merchant(tx, *, name: str, currency: str, now: datetime, name_latin: str | None = None,
                    language: str | None = None) -> tuple[dict, str]:
    """A new merchant and its API key, which is stored only as a SHA-256 hash."""
    merchant_id = new_id("mer")
    account_id = ledger.open_account(tx, kind="merchant", currency=currency,
                                     owner_id=merchant_id, now=now)["id"]
    api_key = new_key("sk_")
    row = {"id": merchant_id, "name": name, "account_id": account_id, "currency": currency,
           "api_key_hash": key_hash(api_key), "created_at": unix(now),
           "name_latin": check_latin(name_latin, 25, "name_latin"), "name_language": check_language(language)}
    merchants_db.insert_merchant(tx, **row)
    add_api_key(tx, merchant_id, api_key, now=unix(now))
    return merchant_view(row), api_key


# -- API keys (docs/security.md, key lifecycle) ---------------------------------------------

DEFAULT_ROLL_SECONDS = 24 * 3600
MAX_ROLL_SECONDS = 7 * 24 * 3600


def api_key_view(row: dict, now: int) -> dict:
    """A key as the merchant and operator see it: never the key, only its last four characters."""
    if row["revoked_at"] is not None:
        status = "revoked"
    elif row["expires_at"] is None:
        status = "active"
    else:
        status = "expiring" if row["expires_at"] > now else "expired"
    return {"id": row["id"], "object": "api_key", "merchant_id": row["merchant_id"], "last4": row["last4"],
            "status": status, "created_at": iso(row["created_at"]),
            "expires_at": iso(row["expires_at"]) if row["expires_at"] is not None else None,
            "revoked_at": iso(row["revoked_at"]) if row["revoked_at"] is not None else None}


def add_api_key(tx, merchant_id: str, api_key: str, *, now: int) -> dict:
    """Record a new sk_ key of the merchant (its hash and last four characters)."""
    row = {"id": new_id("mk"), "merchant_id": merchant_id, "key_hash": key_hash(api_key), "last4": api_key[-4:],
           "created_at": now, "expires_at": None, "revoked_at": None}
    merchants_db.insert_api_key(tx, **row)
    return row


def list_api_keys(tx, caller: Caller, merchant_id: str, now: datetime) -> dict:
    merchant_row(tx, caller, merchant_id, "merchant_id")
    return {"object": "list", "data": [api_key_view(r, unix(now)) for r in merchants_db.api_keys(tx, merchant_id)],
            "has_more": False}


def roll_api_key(tx, caller: Caller, merchant_id: str, *, expires_in: int, now: datetime) -> dict:
    """A new key (answered once, as `secret`); the merchant's keys in use now keep working for
    expires_in seconds more (0: they stop at once), so its servers can change over."""
    merchant_row(tx, caller, merchant_id, "merchant_id")
    at = unix(now)
    merchants_db.expire_api_keys(tx, merchant_id=merchant_id, at=at + expires_in)
    api_key = new_key("sk_")
    row = add_api_key(tx, merchant_id, api_key, now=at)
    return {**api_key_view(row, at), "secret": api_key}


def revoke_api_key(tx, caller: Caller, merchant_id: str, key_id: str, *, now: datetime) -> dict:
    """The key stops working at once (in other processes within gateway.http.auth.CALLER_CACHE_SECONDS)."""
    merchant_row(tx, caller, merchant_id, "merchant_id")
    if not merchants_db.revoke_api_key(tx, merchant_id=merchant_id, key_id=key_id, at=unix(now)):
        raise not_found("API key", "key_id")
    return api_key_view(merchants_db.api_key(tx, merchant_id, key_id), unix(now))


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
