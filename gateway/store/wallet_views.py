"""What the phone wallet's pages and the QR codes' local names read: query functions over
an open transaction.

Each function takes the `tx` and plain values and returns plain rows (dicts). The SQL is
portable (SQLite and PostgreSQL): named parameters, no dialect functions. A list of ids
becomes named parameters `:p0, :p1, ...`, never text pasted into the statement.
"""
from __future__ import annotations

from typing import Iterable


def _in(prefix: str, values: Iterable[str]) -> tuple[str, dict]:
    """`:p0, :p1, ...` and their parameters; ("NULL", {}) for none, which matches no row."""
    values = list(dict.fromkeys(values))
    if not values:
        return "NULL", {}
    return ", ".join(f":{prefix}{i}" for i in range(len(values))), {f"{prefix}{i}": v for i, v in enumerate(values)}


# -- names -------------------------------------------------------------------------------------

def merchant_names(tx, merchant_id: str) -> dict | None:
    """A merchant's names as its codes show them: name, name_latin, name_language, and its
    city as a biller (biller_city, biller_city_latin) and as a shop (shop_city, shop_city_latin)."""
    return tx.one("SELECT m.id, m.name, m.name_latin, m.name_language, b.city AS biller_city,"
                  " b.city_latin AS biller_city_latin, p.city AS shop_city, p.city_latin AS shop_city_latin"
                  " FROM merchants m LEFT JOIN bill_billers b ON b.merchant_id = m.id"
                  " LEFT JOIN checkout_profiles p ON p.merchant_id = m.id WHERE m.id = :id", {"id": merchant_id})


def names_by_account(tx, account_ids: Iterable[str]) -> dict[str, dict]:
    """Ledger account id -> {id, name, name_latin} of the merchants (and billers) owning them."""
    marks, params = _in("a", account_ids)
    rows = tx.query(f"SELECT id, account_id, name, name_latin FROM merchants WHERE account_id IN ({marks})",
                    params)
    return {r["account_id"]: r for r in rows}


# -- statement lines ------------------------------------------------------------------------------

def transfer_details(tx, transfer_ids: Iterable[str]) -> dict[str, str]:
    """Transfer id -> what a statement line adds to its verb: the bill number of a bill
    payment, the note of a payment (a checkout, a pay code), the route of a bus fare."""
    ids = list(transfer_ids)
    marks, params = _in("t", ids)
    details = {r["id"]: f"bill {r['bill_number']}" for r in tx.query(
        f"SELECT p.id, b.bill_number FROM bill_payments p JOIN bill_bills b ON b.id = p.bill_id"
        f" WHERE p.id IN ({marks})", params)}
    for r in tx.query(f"SELECT id, description FROM payments WHERE id IN ({marks})", params):
        if r["description"]:
            details[r["id"]] = r["description"]
    for r in tx.query(f"SELECT transfer_id, route FROM fare_charges WHERE transfer_id IN ({marks})", params):
        details[r["transfer_id"]] = f"route {r['route']}"
    return details


# -- rides ---------------------------------------------------------------------------------------

def token_taps(tx, tokens: Iterable[str], *, since: int, limit: int = 200) -> list[dict]:
    """Taps of the given card tokens since `since` (unix seconds), accepted or refused,
    newest first."""
    marks, params = _in("k", tokens)
    return tx.query(f"SELECT terminal_id, tap_id, token, at, kind, accepted, reason, route, stop, rules_version,"
                    f" direction FROM transit_taps WHERE token IN ({marks}) AND at >= :since"
                    f" ORDER BY at DESC, terminal_id DESC, tap_id DESC LIMIT :n",
                    {**params, "since": since, "n": limit})


def fare_charges(tx, wallet_id: str, tokens: Iterable[str], *, since: int) -> list[dict]:
    """The fare charges of the wallet's token trips since `since`: those it paid and those
    of its linked tokens, oldest first."""
    marks, params = _in("k", tokens)
    return tx.query(f"SELECT token, trip_id, seq, at, route, stop, amount, currency, status, statement"
                    f" FROM fare_charges WHERE (wallet_id = :w OR token IN ({marks})) AND at >= :since"
                    f" ORDER BY at, trip_id, seq", {**params, "w": wallet_id, "since": since})
