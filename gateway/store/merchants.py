"""Merchant queries. Owns `merchants` (migrations 0002, 0012) and `merchant_api_keys` (0017);
gateway/core/merchants.py and gateway/http/auth.py decide. Times are unix seconds."""
from __future__ import annotations


def insert_merchant(tx, *, id: str, name: str, account_id: str, currency: str, api_key_hash: str,
                    created_at: int, name_latin: str | None = None, name_language: str | None = None) -> None:
    tx.execute("INSERT INTO merchants (id, name, account_id, currency, api_key_hash, created_at, name_latin,"
               " name_language) VALUES (:id, :name, :account_id, :currency, :api_key_hash, :created_at,"
               " :name_latin, :name_language)",
               {"id": id, "name": name, "account_id": account_id, "currency": currency,
                "api_key_hash": api_key_hash, "created_at": created_at, "name_latin": name_latin,
                "name_language": name_language})


def merchant(tx, merchant_id: str) -> dict | None:
    return tx.one("SELECT * FROM merchants WHERE id = :id", {"id": merchant_id})


def merchant_key_by_hash(tx, key_hash: str, now: int) -> dict | None:
    """The usable sk_ key hashing to this (merchant_id, expires_at): not revoked, not expired."""
    return tx.one("SELECT merchant_id, expires_at FROM merchant_api_keys WHERE key_hash = :h"
                  " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)", {"h": key_hash, "now": now})


def insert_api_key(tx, *, id: str, merchant_id: str, key_hash: str, last4: str, created_at: int,
                   expires_at: int | None = None, revoked_at: int | None = None) -> None:
    tx.execute("INSERT INTO merchant_api_keys (id, merchant_id, key_hash, last4, created_at, expires_at, revoked_at)"
               " VALUES (:id, :m, :h, :last4, :at, :expires_at, :revoked_at)",
               {"id": id, "m": merchant_id, "h": key_hash, "last4": last4, "at": created_at,
                "expires_at": expires_at, "revoked_at": revoked_at})


def api_keys(tx, merchant_id: str) -> list[dict]:
    """The merchant's keys, newest first (never their hashes)."""
    return tx.query("SELECT id, merchant_id, last4, created_at, expires_at, revoked_at FROM merchant_api_keys"
                    " WHERE merchant_id = :m ORDER BY created_at DESC, id DESC", {"m": merchant_id})


def api_key(tx, merchant_id: str, key_id: str) -> dict | None:
    return tx.one("SELECT id, merchant_id, last4, created_at, expires_at, revoked_at FROM merchant_api_keys"
                  " WHERE id = :id AND merchant_id = :m", {"id": key_id, "m": merchant_id})


def expire_api_keys(tx, *, merchant_id: str, at: int) -> int:
    """Every live key of the merchant that would outlive `at` expires at `at`; how many."""
    return tx.execute("UPDATE merchant_api_keys SET expires_at = :at WHERE merchant_id = :m"
                      " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :at)",
                      {"m": merchant_id, "at": at})


def revoke_api_key(tx, *, merchant_id: str, key_id: str, at: int) -> bool:
    """Revoke the key at `at` (a key revoked before keeps its time); False if there is no such key."""
    return tx.execute("UPDATE merchant_api_keys SET revoked_at = COALESCE(revoked_at, :at)"
                      " WHERE id = :id AND merchant_id = :m", {"id": key_id, "m": merchant_id, "at": at}) == 1
