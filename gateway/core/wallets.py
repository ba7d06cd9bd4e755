"""Customers, their wallets (customer_wallet accounts), balances, statements, pay codes, and
the concession class a wallet's linked cards are priced with."""
from __future__ import annotations

from datetime import datetime

from gateway.core import iso, ledger, new_id, unix
from gateway.core.caller import Caller, key_hash, new_key
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.store import wallets as wallets_db
from protocol.fares import FareError, FareRules

PAY_CODE_SECONDS = 60
DEFAULT_CONCESSION = "adult"  # the column's default in migration 0010


def customer_view(row: dict) -> dict:
    return {"id": row["id"], "object": "customer", "name": row["name"], "email": row["email"],
            "external_ref": row["external_ref"], "created_at": iso(row["created_at"])}


def wallet_view(row: dict) -> dict:
    return {"id": row["id"], "object": "wallet", "customer_id": row["customer_id"],
            "currency": row["currency"], "status": row["status"],
            "concession": row.get("concession") or DEFAULT_CONCESSION,
            "credential_status": "revoked" if row.get("credential_revoked_at") else "active",
            "created_at": iso(row["created_at"])}


def create_customer(tx, *, name: str | None, email: str | None, external_ref: str | None,
                    now: datetime) -> dict:
    row = {"id": new_id("cus"), "name": name, "email": email, "external_ref": external_ref,
           "created_at": unix(now)}
    wallets_db.insert_customer(tx, **row)
    return customer_view(row)


def get_customer(tx, caller: Caller, customer_id: str) -> dict:
    row = wallets_db.customer(tx, customer_id)
    if row is None or caller.kind != "operator":
        raise not_found("customer", "id")
    return customer_view(row)


def create_wallet(tx, *, customer_id: str, currency: str, now: datetime) -> tuple[dict, str]:
    """A new wallet and its credential ("wk_..."), which is stored only as a hash."""
    if wallets_db.customer(tx, customer_id) is None:
        raise not_found("customer", "customer_id")
    account_id = ledger.open_account(tx, kind="customer_wallet", currency=currency,
                                     owner_id=customer_id, now=now)["id"]
    credential = new_key("wk_")
    row = {"id": new_id("wal"), "customer_id": customer_id, "account_id": account_id,
           "currency": currency, "status": "active", "credential_hash": key_hash(credential),
           "concession": DEFAULT_CONCESSION, "created_at": unix(now)}
    wallets_db.insert_wallet(tx, **row)
    return wallet_view(row), credential


def wallet_row(tx, caller: Caller, wallet_id: str, param: str = "id") -> dict:
    """The wallet if the caller may see it (the operator, or the wallet itself)."""
    row = wallets_db.wallet(tx, wallet_id)
    if row is None or not (caller.kind == "operator" or
                           (caller.kind == "wallet" and caller.id == wallet_id)):
        raise not_found("wallet", param)
    return row


def set_concession(tx, caller: Caller, wallet_id: str, klass, *, rules: FareRules) -> dict:
    """Set the concession class the wallet's linked cards are priced with: one of the fare
    rules' classes. Only the operator may (a wallet cannot make itself a student)."""
    if caller.kind != "operator":
        raise not_found("wallet", "id")
    wallet = wallet_row(tx, caller, wallet_id)
    if not isinstance(klass, str):
        raise Invalid("invalid_parameter", "class must be a concession class name such as \"student\".", "class")
    try:
        rules.concession(klass)
    except FareError as e:
        raise Invalid("invalid_parameter", str(e), "class") from None
    wallets_db.set_concession(tx, wallet_id=wallet_id, concession=klass)
    return wallet_view({**wallet, "concession": klass})


def revoke_credential(tx, caller: Caller, wallet_id: str, *, now: datetime) -> dict:
    """The wallet's credential stops working at once (other processes: within
    gateway.http.auth.CALLER_CACHE_SECONDS); the wallet, its money and its cards stay, and the
    operator may reissue a credential. The hash kept is of a key no one was given."""
    wallet = wallet_row(tx, caller, wallet_id)
    wallets_db.replace_credential(tx, wallet_id=wallet_id, credential_hash=key_hash(new_key("wk_")),
                                  revoked_at=unix(now))
    return wallet_view({**wallet, "credential_revoked_at": unix(now)})


def reissue_credential(tx, caller: Caller, wallet_id: str) -> tuple[dict, str]:
    """A new credential (shown once); the one before stops at once."""
    wallet = wallet_row(tx, caller, wallet_id)
    credential = new_key("wk_")
    wallets_db.replace_credential(tx, wallet_id=wallet_id, credential_hash=key_hash(credential), revoked_at=None)
    return wallet_view({**wallet, "credential_revoked_at": None}), credential


def require_active(wallet: dict) -> None:
    if wallet["status"] != "active":
        raise Conflict("wallet_locked", "This wallet is locked.", "wallet_id")


def balance(tx, account_id: str, *, owner_id: str) -> dict:
    """A ledger account's balance as the API shows it (see api.wallets.fresh_balance)."""
    b = ledger.balance(tx, account_id)
    return {"object": "balance", "owner_id": owner_id, "currency": b.currency,
            "available": b.available, "posted": b.posted,
            "pending_debits": b.debits_pending, "pending_credits": b.credits_pending}


def statement(tx, account_id: str, *, owner_id: str, limit: int, after: str | None) -> dict:
    """One page of an account's postings, newest first; `next_cursor` continues."""
    rows, next_cursor = ledger.statement(tx, account_id, limit=limit, after=after)
    # Ledger account ids stay inside the gateway; transfer_id is the resource's id
    # (top_..., pay_..., re_..., cap_...).
    data = [{**{k: v for k, v in row.items() if k != "counterparty_account_id"},
             "created_at": row["created_at"][:19] + "Z"}  # whole seconds, like every other time
            for row in rows]
    return {"object": "list", "owner_id": owner_id, "data": data,
            "has_more": next_cursor is not None, "next_cursor": next_cursor}


def create_pay_code(tx, wallet: dict, *, now: datetime) -> dict:
    """A single-use code the payer shows at a till, valid for PAY_CODE_SECONDS."""
    require_active(wallet)
    code = new_key("pc_")
    expires_at = unix(now) + PAY_CODE_SECONDS
    wallets_db.insert_pay_code(tx, code_hash=key_hash(code), wallet_id=wallet["id"], expires_at=expires_at,
                               created_at=unix(now))
    return {"object": "pay_code", "code": code, "wallet_id": wallet["id"],
            "expires_at": iso(expires_at), "created_at": iso(unix(now))}


def redeem_pay_code(tx, code: str, *, now: datetime) -> dict:
    """The wallet behind an unused, unexpired pay code, which is spent by this call (a
    conditional update: of two tills presenting one code at once, one gets the wallet)."""
    wallet_id = wallets_db.spend_pay_code(tx, code_hash=key_hash(code), now=unix(now))
    if wallet_id is None:
        raise not_found("pay code (or it expired or was used)", "pay_code")
    wallet = wallets_db.wallet(tx, wallet_id)
    require_active(wallet)
    return wallet
