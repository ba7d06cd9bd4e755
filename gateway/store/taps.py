"""Tap and clearing queries: the taps validators upload, and the clearing of purse cards.

Owns `transit_taps` (migrations 0006, 0011) and clearing's `purse_cards`,
`purse_receipts` and `purse_loads` (migration 0006); reads the certificates in
`issuer_cards`. gateway/core/taps.py and
gateway/core/clearing.py decide; this module only reads and writes rows.
Money is minor units; times are unix seconds.

Many writers at once, on any node:
- a tap is stored once: (terminal_id, tap_id) is the key of transit_taps and
  `insert_taps` inserts with ON CONFLICT DO NOTHING RETURNING, so of one upload
  sent to two nodes at once each tap is new to exactly one of them;
- a card's receipts are judged one upload at a time: `lock_cards` holds the cards'
  clearing state rows (FOR UPDATE on PostgreSQL, in card id order) until commit,
  and a card's receipts and loads are only written under that lock; `add_cards`
  makes the missing state rows first, with ON CONFLICT DO NOTHING;
- a counter is cleared once: a receipt is unique per (card_id, counter) and a
  load per (card_id, counter), both inserted with ON CONFLICT DO NOTHING.
"""
from __future__ import annotations

import contextlib

INSERT_ROWS = 50  # rows per multi-row INSERT (18 columns: far below SQLite's parameter limit)
IN_LIST = 500  # values per IN (...) list
TAP_COLUMNS = ("terminal_id", "tap_id", "merchant_id", "at", "kind", "accepted", "reason", "route", "stop",
               "rules_version", "amount", "currency", "card_id", "token", "flags", "clearing", "received_at",
               "direction")
CARD_COLUMNS = ("card_id", "currency", "float_account_id", "cleared_counter", "cleared_balance", "problem",
                "created_at")


def _query_in(tx, sql: str, values, **params) -> list[dict]:
    """The rows of `sql`, whose `{}` stands for an IN list, for every one of the (distinct,
    sorted) values: run once per IN_LIST of them."""
    ordered, rows = sorted(set(values)), []
    for start in range(0, len(ordered), IN_LIST):
        names = {f"v{n}": value for n, value in enumerate(ordered[start:start + IN_LIST])}
        rows += tx.query(sql.format(", ".join(":" + name for name in names)), {**params, **names})
    return rows


def _insert_new(tx, table: str, columns: tuple[str, ...], rows: list[dict], *, unique: str, key: str) -> set[str]:
    """Insert each row (a dict of columns) whose `unique` columns are not taken (on PostgreSQL
    INSERT_ROWS rows per statement); the `key` of each row inserted. A row another writer is inserting
    at this moment is waited for, then skipped."""
    if tx.dialect == "sqlite" and rows:
        # The writer is alone: when every row goes in, all are this call's. SQLite binds a
        # statement per row through executemany several times faster than a multi-row
        # VALUES of named parameters; a row already there undoes this and takes the path below.
        with contextlib.suppress(_SomeTaken), tx.savepoint():
            if tx.execute_many(f"INSERT INTO {table} ({', '.join(columns)})"
                               f" VALUES ({', '.join(':' + c for c in columns)}) ON CONFLICT ({unique}) DO NOTHING",
                               rows) != len(rows):
                raise _SomeTaken
            return {row[key] for row in rows}
    inserted = set()
    for start in range(0, len(rows), INSERT_ROWS):
        chunk = rows[start:start + INSERT_ROWS]
        params = {f"{c}{n}": row[c] for n, row in enumerate(chunk) for c in columns}
        values = ", ".join("(" + ", ".join(f":{c}{n}" for c in columns) + ")" for n in range(len(chunk)))
        inserted.update(r[key] for r in tx.query(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} ON CONFLICT ({unique}) DO NOTHING"
            f" RETURNING {key}", params))
    return inserted


class _SomeTaken(Exception):
    """A bulk insert met rows already stored (see _insert_new)."""


# -- taps --------------------------------------------------------------------------------


def stored_taps(tx, *, terminal_id: str, tap_ids: list[str]) -> dict[str, dict]:
    """The terminal's taps already stored among tap_ids: tap id -> {tap_id, flags, clearing}."""
    return {row["tap_id"]: row for row in _query_in(
        tx, "SELECT tap_id, flags, clearing FROM transit_taps WHERE terminal_id = :t AND tap_id IN ({})",
        tap_ids, t=terminal_id)}


def insert_taps(tx, rows: list[dict]) -> set[str]:
    """Store each tap (a dict of TAP_COLUMNS, all of one terminal) not stored yet; the tap ids
    this call stored. A tap another writer is storing at this moment is waited for, then skipped."""
    return _insert_new(tx, "transit_taps", TAP_COLUMNS, rows, unique="terminal_id, tap_id", key="tap_id")


def set_tap_clearing(tx, *, terminal_id: str, tap_id: str, clearing: str) -> None:
    tx.execute("UPDATE transit_taps SET clearing = :s WHERE terminal_id = :t AND tap_id = :i",
               {"s": clearing, "t": terminal_id, "i": tap_id})


def unpriced_token_taps(tx, *, since: int, until: int) -> list[dict]:
    """Accepted token taps at [since, until) waiting for trip pricing, with a route and stop,
    in time order: terminal_id, tap_id, token, at, route, stop, rules_version, direction."""
    return tx.query("SELECT terminal_id, tap_id, token, at, route, stop, rules_version, direction"
                    " FROM transit_taps WHERE clearing = 'unpriced' AND at >= :a AND at < :b"
                    " AND route IS NOT NULL AND stop IS NOT NULL ORDER BY at, terminal_id, tap_id",
                    {"a": since, "b": until})


def ridership(tx, *, since: int, until: int, route: str | None = None, merchant_id: str | None = None) -> list[dict]:
    """Per route and hour (unix seconds at its start) of taps at [since, until): taps, accepted,
    token_taps, purse_revenue (posted purse fares) and currency."""
    where, params = ["at >= :a", "at < :b"], {"a": since, "b": until}
    if route is not None:
        where.append("route = :route")
        params["route"] = route
    if merchant_id is not None:
        where.append("merchant_id = :m")
        params["m"] = merchant_id
    return tx.query(
        "SELECT route, (at / 3600) * 3600 AS hour, COUNT(*) AS taps,"
        " SUM(CASE WHEN accepted = 1 THEN 1 ELSE 0 END) AS accepted,"
        " SUM(CASE WHEN kind IN ('emv', 'uid') AND accepted = 1 THEN 1 ELSE 0 END) AS token_taps,"
        " SUM(CASE WHEN clearing = 'posted' THEN amount ELSE 0 END) AS purse_revenue,"
        " MIN(currency) AS currency"
        f" FROM transit_taps WHERE {' AND '.join(where)} GROUP BY route, (at / 3600) * 3600 ORDER BY route, hour",
        params)


# -- purse cards: clearing's state per card -----------------------------------------------


def add_cards(tx, rows: list[dict]) -> set[str]:
    """Make the clearing state row of each card (a dict of CARD_COLUMNS) that has none; the
    card ids this call made. Pass them in card id order (one order for every writer)."""
    return _insert_new(tx, "purse_cards", CARD_COLUMNS, rows, unique="card_id", key="card_id")


_LOCK_CARDS = {
    "sqlite": "",  # the writer is alone
    "postgresql": " FOR UPDATE",  # held until commit; taken in card id order, so two uploads never deadlock
}


def lock_cards(tx, card_ids: list[str]) -> dict[str, dict]:
    """The cards' clearing state rows, by card id, each held against every other writer until
    commit: what they say stays true for this transaction."""
    return {row["card_id"]: row for row in _query_in(
        tx, "SELECT * FROM purse_cards WHERE card_id IN ({}) ORDER BY card_id" + _LOCK_CARDS[tx.dialect], card_ids)}


def card(tx, card_id: str) -> dict | None:
    """The card's clearing state, unlocked (for reading)."""
    return tx.one("SELECT * FROM purse_cards WHERE card_id = :c", {"c": card_id})


def save_cards(tx, cards: list[dict]) -> None:
    """Write back each card's cleared_counter, cleared_balance and problem (dicts with card_id)."""
    tx.execute_many("UPDATE purse_cards SET cleared_counter = :cleared_counter, cleared_balance = :cleared_balance,"
                    " problem = :problem WHERE card_id = :card_id", cards)


# -- receipts --------------------------------------------------------------------------------


def held_receipts(tx, card_ids: list[str]) -> list[dict]:
    """(card_id, counter) of the cards' receipts held for a gap."""
    return _query_in(tx, "SELECT card_id, counter FROM purse_receipts WHERE card_id IN ({}) AND status = 'held'",
                     card_ids)


def insert_receipt(tx, row: dict) -> bool:
    """Keep the receipt unless its card has one at its counter already; whether it did."""
    return tx.execute(
        "INSERT INTO purse_receipts (card_id, counter, amount, currency, balance_after, receipt, terminal_id,"
        " tap_id, merchant_id, status, transfer_id, created_at) VALUES (:card_id, :counter, :amount, :currency,"
        " :balance_after, :receipt, :terminal_id, :tap_id, :merchant_id, :status, :transfer_id, :created_at)"
        " ON CONFLICT (card_id, counter) DO NOTHING", row) == 1


def receipt(tx, *, card_id: str, counter: int) -> dict | None:
    return tx.one("SELECT * FROM purse_receipts WHERE card_id = :c AND counter = :n", {"c": card_id, "n": counter})


def set_receipt_status(tx, *, card_id: str, counter: int, status: str, transfer_id: str | None = None) -> None:
    tx.execute("UPDATE purse_receipts SET status = :s, transfer_id = :t WHERE card_id = :c AND counter = :n",
               {"s": status, "t": transfer_id, "c": card_id, "n": counter})


def waiting_receipts(tx, card_id: str) -> list[dict]:
    """The card's receipts not posted (held, or stopped by a problem), in counter order."""
    return tx.query("SELECT counter, amount, balance_after, terminal_id, tap_id, status FROM purse_receipts"
                    " WHERE card_id = :c AND status <> 'posted' ORDER BY counter", {"c": card_id})


# -- loads -----------------------------------------------------------------------------------


def authorised_loads(tx, card_ids: list[str]) -> list[dict]:
    """(card_id, counter) of the cards' loads authorised and not yet applied or superseded."""
    return _query_in(tx, "SELECT card_id, counter FROM purse_loads WHERE card_id IN ({}) AND status = 'authorised'",
                     card_ids)


def authorised_load(tx, *, card_id: str, counter: int) -> dict | None:
    return tx.one("SELECT * FROM purse_loads WHERE card_id = :c AND counter = :n AND status = 'authorised'",
                  {"c": card_id, "n": counter})


def insert_load(tx, row: dict) -> bool:
    """Record the load unless its card has one at its counter already; whether it did."""
    return tx.execute(
        "INSERT INTO purse_loads (id, wallet_id, card_id, counter, amount, currency, reference, authorisation,"
        " transfer_id, status, refund_transfer_id, created_at) VALUES (:id, :wallet_id, :card_id, :counter,"
        " :amount, :currency, :reference, :authorisation, :transfer_id, :status, :refund_transfer_id,"
        " :created_at) ON CONFLICT (card_id, counter) DO NOTHING", row) == 1


def set_load_status(tx, *, load_id: str, status: str, refund_transfer_id: str | None = None) -> None:
    tx.execute("UPDATE purse_loads SET status = :s, refund_transfer_id = COALESCE(:r, refund_transfer_id)"
               " WHERE id = :id", {"s": status, "r": refund_transfer_id, "id": load_id})


def card_loads(tx, card_id: str) -> list[dict]:
    return tx.query("SELECT * FROM purse_loads WHERE card_id = :c ORDER BY counter", {"c": card_id})


# -- what clearing reads of the issuer's --------------------------------------------------------


def certificates(tx, card_ids: list[str]) -> dict[str, str]:
    """card id -> certificate hex, for those of the cards the issuer certified."""
    return {r["card_id"]: r["certificate"] for r in _query_in(
        tx, "SELECT card_id, certificate FROM issuer_cards WHERE card_id IN ({})", card_ids)}
