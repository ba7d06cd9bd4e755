"""Dashboard queries: the operator's and the wallet page's figures no service answers.

Owns no table: it only reads those of other areas (transit_taps, till_sales, terminals, merchants, payments, bill_billers, bill_bills,
bill_payments, issuer_cards), in a read transaction. gateway/core/dashboard.py shapes the answers.

Portable SQL: every non-aggregated column grouped, booleans compared as
integers (`accepted = 1`), no SQLite functions. On PostgreSQL SUM over BIGINT is
NUMERIC, which the backend hands back as int when whole; nothing here divides.

A shop till's sales are in till_sales (migration 0019), apart from the transit taps.
"""
from __future__ import annotations


def _in_list(values: list) -> tuple[str, dict]:
    """`:v0, :v1, ...` for an IN (...) list of values, and their parameters."""
    return ", ".join(f":v{i}" for i in range(len(values))), {f"v{i}": v for i, v in enumerate(values)}


# -- transit -----------------------------------------------------------------------------


def latest_tap_at(tx) -> int | None:
    """When the latest transit tap happened (the validator's clock), or None."""
    return tx.one("SELECT MAX(at) AS at FROM transit_taps")["at"]


def tap_counts(tx, *, since: int, until: int) -> dict:
    """Transit taps in [since, until): taps, accepted (None when there are none), and
    riders (distinct tokens or card ids of accepted taps)."""
    return tx.one("SELECT COUNT(*) AS taps, SUM(CASE WHEN accepted = 1 THEN 1 ELSE 0 END) AS accepted,"
                  " COUNT(DISTINCT CASE WHEN accepted = 1 THEN COALESCE(token, card_id) END) AS riders"
                  " FROM transit_taps WHERE at >= :a AND at < :b", {"a": since, "b": until})


def denied_reasons(tx, *, since: int, until: int) -> list[dict]:
    """Refused transit taps in [since, until) per reason (reason, taps), most first."""
    return tx.query("SELECT reason, COUNT(*) AS taps FROM transit_taps"
                    " WHERE at >= :a AND at < :b AND accepted = 0"
                    " GROUP BY reason ORDER BY COUNT(*) DESC, reason", {"a": since, "b": until})


def uploading_terminals(tx) -> list[dict]:
    """Each terminal that has uploaded taps or sales: id, name, status, merchant_name,
    last_upload, last_tap, taps (its taps and sale records), and sales (its sale records); by name."""
    return tx.query(
        "SELECT t.id, t.name, t.status, m.name AS merchant_name, u.last_upload, u.last_tap, u.taps, u.sales"
        " FROM (SELECT terminal_id, MAX(received_at) AS last_upload, MAX(at) AS last_tap, COUNT(*) AS taps,"
        "       SUM(sale) AS sales FROM (SELECT terminal_id, received_at, at, 0 AS sale FROM transit_taps"
        "       UNION ALL SELECT terminal_id, received_at, at, 1 AS sale FROM till_sales) x"
        "       GROUP BY terminal_id) u"
        " JOIN terminals t ON t.id = u.terminal_id JOIN merchants m ON m.id = t.merchant_id"
        " ORDER BY t.name, t.id")


def silent_terminals(tx) -> int:
    """How many active terminals have never uploaded a tap or a sale."""
    return tx.one("SELECT COUNT(*) AS n FROM terminals t WHERE t.status = 'active'"
                  " AND NOT EXISTS (SELECT 1 FROM transit_taps x WHERE x.terminal_id = t.id)"
                  " AND NOT EXISTS (SELECT 1 FROM till_sales s WHERE s.terminal_id = t.id)")["n"]


# -- bills and shops ---------------------------------------------------------------------


def bills_per_biller(tx, *, now: int) -> list[dict]:
    """Per biller and currency (billers with bills): biller_id, name, currency, issued,
    issued_amount, paid, paid_amount, and outstanding on bills still payable at now."""
    return tx.query(
        "SELECT m.id AS biller_id, m.name, b.currency, COUNT(*) AS issued, SUM(b.amount_due) AS issued_amount,"
        " SUM(CASE WHEN b.status = 'paid' THEN 1 ELSE 0 END) AS paid,"
        " SUM(b.amount_paid) AS paid_amount,"
        " SUM(CASE WHEN b.status IN ('open', 'partially_paid') AND b.expires_at > :now"
        "     THEN b.amount_due - b.amount_paid ELSE 0 END) AS outstanding"
        " FROM bill_billers x JOIN merchants m ON m.id = x.merchant_id"
        " JOIN bill_bills b ON b.biller_id = x.merchant_id"
        " GROUP BY m.id, m.name, b.currency ORDER BY m.name, m.id, b.currency", {"now": now})


def idle_billers(tx) -> list[dict]:
    """Billers that have issued no bill: biller_id, name."""
    return tx.query("SELECT m.id AS biller_id, m.name FROM bill_billers x JOIN merchants m ON m.id = x.merchant_id"
                    " WHERE NOT EXISTS (SELECT 1 FROM bill_bills b WHERE b.biller_id = x.merchant_id)"
                    " ORDER BY m.name, m.id")


def shop_payments(tx, *, since: int, until: int) -> list[dict]:
    """Wallet payments in [since, until) per currency: currency, count, amount, refunded."""
    return tx.query("SELECT currency, COUNT(*) AS count, SUM(amount) AS amount,"
                    " SUM(refunded_amount) AS refunded FROM payments"
                    " WHERE created_at >= :a AND created_at < :b GROUP BY currency ORDER BY currency",
                    {"a": since, "b": until})


def bill_payments(tx, *, since: int, until: int) -> list[dict]:
    """Bill payments in [since, until) per currency: currency, count, amount."""
    return tx.query("SELECT currency, COUNT(*) AS count, SUM(amount) AS amount FROM bill_payments"
                    " WHERE created_at >= :a AND created_at < :b GROUP BY currency ORDER BY currency",
                    {"a": since, "b": until})


def latest_payment_times(tx) -> dict:
    """When the latest bill payment, wallet payment and till sale happened (None if none):
    {"bill", "shop", "till"}."""
    return {"bill": tx.one("SELECT MAX(created_at) AS at FROM bill_payments")["at"],
            "shop": tx.one("SELECT MAX(created_at) AS at FROM payments")["at"],
            "till": tx.one("SELECT MAX(at) AS at FROM till_sales")["at"]}


# -- the wallet page -----------------------------------------------------------------------


def merchant_names(tx) -> dict[str, str]:
    """Every merchant's name by its ledger account id."""
    return {r["account_id"]: r["name"] for r in tx.query("SELECT account_id, name FROM merchants")}


def bill_numbers(tx, payment_ids: list[str]) -> dict[str, str]:
    """The bill number each of these bill payments paid, by payment id (others are left out)."""
    if not payment_ids:
        return {}
    marks, params = _in_list(payment_ids)
    return {r["id"]: r["bill_number"] for r in tx.query(
        "SELECT p.id, b.bill_number FROM bill_payments p JOIN bill_bills b ON b.id = p.bill_id"
        f" WHERE p.id IN ({marks})", params)}


def payment_descriptions(tx, payment_ids: list[str]) -> dict[str, str | None]:
    """The description of each of these wallet payments, by payment id (others are left out)."""
    if not payment_ids:
        return {}
    marks, params = _in_list(payment_ids)
    return {r["id"]: r["description"] for r in tx.query(
        f"SELECT id, description FROM payments WHERE id IN ({marks})", params)}


def purse_taps(tx, wallet_id: str, *, limit: int) -> list[dict]:
    """The latest taps of the wallet's purse cards, newest first: at, route, stop, accepted,
    reason, amount, currency, clearing."""
    return tx.query("SELECT t.at, t.route, t.stop, t.accepted, t.reason, t.amount, t.currency, t.clearing"
                    " FROM transit_taps t JOIN issuer_cards c ON c.card_id = t.card_id"
                    " WHERE c.wallet_id = :w ORDER BY t.at DESC, t.tap_id DESC LIMIT :n",
                    {"w": wallet_id, "n": limit})


def billers(tx) -> list[dict]:
    """Every biller: id and name, by name."""
    return tx.query("SELECT m.id, m.name FROM bill_billers x JOIN merchants m ON m.id = x.merchant_id"
                    " ORDER BY m.name, m.id")


def api_keys(tx, *, limit: int) -> list[dict]:
    """The newest merchant API keys (never their hashes), with each merchant's name."""
    return tx.query("SELECT k.id, k.merchant_id, m.name, k.last4, k.created_at, k.expires_at, k.revoked_at"
                    " FROM merchant_api_keys k JOIN merchants m ON m.id = k.merchant_id"
                    " ORDER BY k.created_at DESC, k.id DESC LIMIT :n", {"n": limit})


def stopped_terminals(tx) -> list[dict]:
    """Terminals suspended or revoked, latest first."""
    return tx.query("SELECT t.id, t.name, t.status, t.suspended_at, m.name AS merchant FROM terminals t"
                    " JOIN merchants m ON m.id = t.merchant_id WHERE t.status <> 'active'"
                    " ORDER BY t.suspended_at DESC, t.id")


def revoked_wallet_credentials(tx) -> int:
    return tx.one("SELECT count(*) AS n FROM wallets WHERE credential_revoked_at IS NOT NULL")["n"]
