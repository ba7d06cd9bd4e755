"""Customer and wallet queries: customers, their wallets and the wallets' pay codes.

Owns `customers`, `wallets` and `pay_codes` (migrations 0002, 0010, 0017).
gateway/core/wallets.py decides. Times are unix seconds.

A pay code is spent once however many tills present it at once: `spend_pay_code`
is a conditional update (`WHERE used_at IS NULL`), so of two writers the second
finds the row already spent and changes nothing.
"""
from __future__ import annotations


# -- customers ----------------------------------------------------------------------------

def insert_customer(tx, *, id: str, name: str | None, email: str | None, external_ref: str | None,
                    created_at: int) -> None:
    tx.execute("INSERT INTO customers (id, name, email, external_ref, created_at)"
               " VALUES (:id, :name, :email, :external_ref, :created_at)",
               {"id": id, "name": name, "email": email, "external_ref": external_ref, "created_at": created_at})


def customer(tx, customer_id: str) -> dict | None:
    return tx.one("SELECT * FROM customers WHERE id = :id", {"id": customer_id})


# -- wallets ------------------------------------------------------------------------------

def insert_wallet(tx, *, id: str, customer_id: str, account_id: str, currency: str, status: str,
                  credential_hash: str, concession: str, created_at: int) -> None:
    tx.execute("INSERT INTO wallets (id, customer_id, account_id, currency, status, credential_hash, concession,"
               " created_at) VALUES (:id, :customer_id, :account_id, :currency, :status, :credential_hash,"
               " :concession, :created_at)",
               {"id": id, "customer_id": customer_id, "account_id": account_id, "currency": currency,
                "status": status, "credential_hash": credential_hash, "concession": concession,
                "created_at": created_at})


def wallet(tx, wallet_id: str) -> dict | None:
    return tx.one("SELECT * FROM wallets WHERE id = :id", {"id": wallet_id})


def wallet_id_by_credential(tx, credential_hash: str) -> str | None:
    """The wallet whose wk_ credential hashes to this (the bearer key's lookup)."""
    row = tx.one("SELECT id FROM wallets WHERE credential_hash = :h", {"h": credential_hash})
    return row["id"] if row else None


def replace_credential(tx, *, wallet_id: str, credential_hash: str, revoked_at: int | None) -> bool:
    """The wallet's credential from now on (the old one stops at once); revoked_at set when the
    new hash is of a key no one was given (a revocation). False if there is no such wallet."""
    return tx.execute("UPDATE wallets SET credential_hash = :h, credential_revoked_at = :r WHERE id = :id",
                      {"h": credential_hash, "r": revoked_at, "id": wallet_id}) == 1


def set_concession(tx, *, wallet_id: str, concession: str) -> None:
    tx.execute("UPDATE wallets SET concession = :c WHERE id = :id", {"c": concession, "id": wallet_id})


# -- pay codes ----------------------------------------------------------------------------

def insert_pay_code(tx, *, code_hash: str, wallet_id: str, expires_at: int, created_at: int) -> None:
    tx.execute("INSERT INTO pay_codes (code_hash, wallet_id, expires_at, created_at)"
               " VALUES (:h, :w, :expires_at, :created_at)",
               {"h": code_hash, "w": wallet_id, "expires_at": expires_at, "created_at": created_at})


def spend_pay_code(tx, *, code_hash: str, now: int) -> str | None:
    """Mark the unused, unexpired code used at `now`; its wallet id, or None when there is no
    such code (unknown, expired, or already spent, perhaps a moment ago by another till)."""
    row = tx.one("UPDATE pay_codes SET used_at = :now"
                 " WHERE code_hash = :h AND used_at IS NULL AND expires_at > :now RETURNING wallet_id",
                 {"h": code_hash, "now": now})
    return row["wallet_id"] if row else None
