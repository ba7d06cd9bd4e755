"""Merchant queries. Owns `merchants` (migrations 0002, 0012); gateway/services/merchants.py decides."""
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


def merchant_id_by_api_key(tx, api_key_hash: str) -> str | None:
    """The merchant whose sk_ key hashes to this (the bearer key's lookup)."""
    row = tx.one("SELECT id FROM merchants WHERE api_key_hash = :h", {"h": api_key_hash})
    return row["id"] if row else None
