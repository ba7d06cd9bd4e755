"""Bill queries: billers, their bills, and the payments towards them.

Owns `bill_billers`, `bill_bills` and `bill_payments` (migration 0005); reads
`merchants` (a biller is a merchant).
gateway/core/bills.py decides; this module only reads and writes rows.
Money is minor units; times are unix seconds.

Many writers at once, on any node:
- a bill number is one bill per biller: (biller_id, bill_number) is unique and
  `insert_bill` inserts with ON CONFLICT DO NOTHING, saying whether it did;
- a bill is never paid beyond its rules: `add_payment` adds to the paid amount
  only where the bill takes that payment now (outstanding, not expired, at most
  what is outstanding, at least its minimum or all that is outstanding), in one
  conditional UPDATE, so two payments at once are judged one after the other;
- a bill is cancelled only while nothing is paid towards it (`cancel_bill`).
"""
from __future__ import annotations

# -- billers ---------------------------------------------------------------------------


def insert_biller(tx, *, merchant_id: str, city: str, mcc: str, created_at: int,
                  city_latin: str | None = None) -> None:
    """Mark the merchant as a biller, with what its bills' QR codes show."""
    tx.execute("INSERT INTO bill_billers (merchant_id, city, mcc, created_at, city_latin)"
               " VALUES (:m, :city, :mcc, :at, :city_latin)",
               {"m": merchant_id, "city": city, "mcc": mcc, "at": created_at, "city_latin": city_latin})


def biller(tx, biller_id: str) -> dict | None:
    """The biller (id, name, account_id, currency, city, mcc, created_at), or None."""
    return tx.one("SELECT m.id, m.name, m.account_id, m.currency, b.city, b.mcc, b.created_at"
                  " FROM merchants m JOIN bill_billers b ON b.merchant_id = m.id WHERE m.id = :id",
                  {"id": biller_id})


# -- bills -----------------------------------------------------------------------------


def insert_bill(tx, row: dict) -> bool:
    """Insert the bill (every column of bill_bills) unless its biller has a bill with its
    number; whether it did."""
    return tx.execute(
        "INSERT INTO bill_bills (id, biller_id, bill_number, consumer_number, period, amount_due, amount_paid,"
        " minimum_payment, currency, due_date, expires_at, status, created_at, paid_at, cancelled_at)"
        " VALUES (:id, :biller_id, :bill_number, :consumer_number, :period, :amount_due, :amount_paid,"
        " :minimum_payment, :currency, :due_date, :expires_at, :status, :created_at, :paid_at, :cancelled_at)"
        " ON CONFLICT (biller_id, bill_number) DO NOTHING", row) == 1


def bill(tx, bill_id: str) -> dict | None:
    """The bill with what paying it and drawing its code need of its biller (biller_name,
    biller_account_id, biller_city, biller_mcc), or None."""
    return tx.one("SELECT b.*, m.name AS biller_name, m.account_id AS biller_account_id,"
                  " bb.city AS biller_city, bb.mcc AS biller_mcc FROM bill_bills b"
                  " JOIN merchants m ON m.id = b.biller_id JOIN bill_billers bb ON bb.merchant_id = b.biller_id"
                  " WHERE b.id = :id", {"id": bill_id})


def bill_by_number(tx, *, biller_id: str, bill_number: str) -> dict | None:
    """The bill's id and currency, or None."""
    return tx.one("SELECT id, currency FROM bill_bills WHERE biller_id = :b AND bill_number = :n",
                  {"b": biller_id, "n": bill_number})


def bill_position(tx, *, bill_id: str, biller_id: str) -> dict | None:
    """Where the biller's bill sits in a newest-first list ({"created_at", "id"}), or None."""
    return tx.one("SELECT created_at, id FROM bill_bills WHERE id = :a AND biller_id = :b",
                  {"a": bill_id, "b": biller_id})


# What `status` selects in bills_page: the payable ones, the expired ones, one live status, or a stored one.
_STATUS_WHERE = {
    "outstanding": "b.status IN ('open', 'partially_paid') AND b.expires_at > :now",
    "expired": "b.status IN ('open', 'partially_paid') AND b.expires_at <= :now",
    "open": "b.status = :status AND b.expires_at > :now",
    "partially_paid": "b.status = :status AND b.expires_at > :now",
}


def bills_page(tx, *, biller_id: str, now: int, limit: int, consumer_number: str | None = None,
               bill_number: str | None = None, period: str | None = None, status: str | None = None,
               after: dict | None = None) -> list[dict]:
    """Up to limit of the biller's bills, newest first, each with its biller_name; those
    matching each filter given; `status` as the API names them ("outstanding": payable
    now, "expired": unpaid and past expiry); after `after` ({"created_at", "id"}) if given."""
    where = ["b.biller_id = :biller_id"]
    params: dict = {"biller_id": biller_id, "now": now, "n": limit}
    for column, value in (("consumer_number", consumer_number), ("bill_number", bill_number), ("period", period)):
        if value is not None:
            where.append(f"b.{column} = :{column}")
            params[column] = value
    if status is not None:
        where.append(_STATUS_WHERE.get(status, "b.status = :status"))
        params["status"] = status
    if after is not None:
        where.append("(b.created_at < :t OR (b.created_at = :t AND b.id < :a))")
        params.update(t=after["created_at"], a=after["id"])
    return tx.query("SELECT b.*, m.name AS biller_name FROM bill_bills b JOIN merchants m ON m.id = b.biller_id"
                    f" WHERE {' AND '.join(where)} ORDER BY b.created_at DESC, b.id DESC LIMIT :n", params)


def cancel_bill(tx, *, bill_id: str, at: int) -> bool:
    """Cancel the bill if it is open with nothing paid; whether it did."""
    return tx.execute("UPDATE bill_bills SET status = 'cancelled', cancelled_at = :t"
                      " WHERE id = :id AND status = 'open' AND amount_paid = 0", {"t": at, "id": bill_id}) == 1


def add_payment(tx, *, bill_id: str, amount: int, now: int) -> dict | None:
    """Count `amount` as paid towards the bill if it takes that payment now; the bill's
    amount_paid, status and paid_at after it, or None (nothing changed) if it does not."""
    rows = tx.query(
        "UPDATE bill_bills SET amount_paid = amount_paid + :amount,"
        " status = CASE WHEN amount_paid + :amount = amount_due THEN 'paid' ELSE 'partially_paid' END,"
        " paid_at = CASE WHEN amount_paid + :amount = amount_due THEN :now ELSE NULL END"
        " WHERE id = :id AND status IN ('open', 'partially_paid') AND expires_at > :now"
        " AND amount_paid + :amount <= amount_due"
        " AND (:amount >= minimum_payment OR amount_paid + :amount = amount_due)"
        " RETURNING amount_paid, status, paid_at",
        {"id": bill_id, "amount": amount, "now": now})
    return rows[0] if rows else None


# -- payments ----------------------------------------------------------------------------


def insert_payment(tx, *, id: str, bill_id: str, biller_id: str, wallet_id: str, amount: int, currency: str,
                   period: str, transfer_id: str, created_at: int) -> None:
    tx.execute("INSERT INTO bill_payments (id, bill_id, biller_id, wallet_id, amount, currency, period,"
               " transfer_id, created_at) VALUES (:id, :bill_id, :biller_id, :wallet_id, :amount, :currency,"
               " :period, :transfer_id, :created_at)",
               {"id": id, "bill_id": bill_id, "biller_id": biller_id, "wallet_id": wallet_id, "amount": amount,
                "currency": currency, "period": period, "transfer_id": transfer_id, "created_at": created_at})


_PAYMENT_SELECT = ("SELECT p.*, m.name AS biller_name, b.bill_number, b.consumer_number FROM bill_payments p"
                   " JOIN merchants m ON m.id = p.biller_id JOIN bill_bills b ON b.id = p.bill_id")


def payment(tx, payment_id: str) -> dict | None:
    """The payment with its biller_name and its bill's bill_number and consumer_number, or None."""
    return tx.one(f"{_PAYMENT_SELECT} WHERE p.id = :id", {"id": payment_id})


def _payment_filters(biller_id, wallet_id, period) -> tuple[list[str], dict]:
    where, params = [], {}
    for column, value in (("biller_id", biller_id), ("wallet_id", wallet_id), ("period", period)):
        if value is not None:
            where.append(f"p.{column} = :{column}")
            params[column] = value
    return where or ["1 = 1"], params


def payment_totals(tx, *, biller_id: str | None = None, wallet_id: str | None = None,
                   period: str | None = None) -> list[dict]:
    """Count and sum of the payments matching each filter given, per currency."""
    where, params = _payment_filters(biller_id, wallet_id, period)
    return tx.query("SELECT p.currency, COUNT(*) AS count, SUM(p.amount) AS amount FROM bill_payments p"
                    f" WHERE {' AND '.join(where)} GROUP BY p.currency ORDER BY p.currency", params)


def payment_position(tx, payment_id: str, *, biller_id: str | None = None, wallet_id: str | None = None,
                     period: str | None = None) -> dict | None:
    """Where the payment sits among those matching the filters ({"created_at", "id"}), or None."""
    where, params = _payment_filters(biller_id, wallet_id, period)
    return tx.one(f"SELECT p.created_at, p.id FROM bill_payments p WHERE p.id = :a AND {' AND '.join(where)}",
                  {**params, "a": payment_id})


def payments_page(tx, *, limit: int, biller_id: str | None = None, wallet_id: str | None = None,
                  period: str | None = None, after: dict | None = None) -> list[dict]:
    """Up to limit of the payments matching each filter given, newest first, as `payment`
    gives them; after `after` ({"created_at", "id"}) if given."""
    where, params = _payment_filters(biller_id, wallet_id, period)
    if after is not None:
        where.append("(p.created_at < :t OR (p.created_at = :t AND p.id < :a))")
        params.update(t=after["created_at"], a=after["id"])
    return tx.query(f"{_PAYMENT_SELECT} WHERE {' AND '.join(where)} ORDER BY p.created_at DESC, p.id DESC LIMIT :n",
                    {**params, "n": limit})
