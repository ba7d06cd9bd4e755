"""Account fare queries: the published fare rules, the charges of token trips, and the
rows charging runs hold per token.

Owns `fare_rule_versions` and `fare_tokens` (migration 0014) and `fare_charges`
(migration 0009); reads `fare_card_links` and `terminals`. gateway/core/
fare_charges.py decides; this module only reads and writes rows. Money is minor
units; times are unix seconds; days are the operator's local dates, YYYY-MM-DD.

Many writers at once, on any node:
- a fare rules version is one document: its number is the key, inserted with ON
  CONFLICT DO NOTHING, and the current rules are the highest version;
- a token is priced by one run at a time: `hold_tokens` upserts the tokens' rows,
  which locks them until commit (taken in token order, so runs never deadlock on
  them), and a run reads what was charged only after holding the token;
- a charge is written once per (token, trip_id, seq) (unique, migration 0009) and
  its money moves under a ledger transfer id made from the same three;
- a debt is settled once: `settle_charge` changes only an unpaid charge.
"""
from __future__ import annotations

# -- fare rules ------------------------------------------------------------------------------


def rule_version(tx, version: int) -> dict | None:
    """The published rules of that version (version, document, digest, effective_from, published_at)."""
    return tx.one("SELECT * FROM fare_rule_versions WHERE version = :v", {"v": version})


def current_rules(tx) -> dict | None:
    """The highest published version, as rule_version gives it, or None when none is published."""
    return tx.one("SELECT * FROM fare_rule_versions ORDER BY version DESC LIMIT 1")


def insert_rule_version(tx, *, version: int, document: str, digest: str, effective_from: int,
                        published_at: int) -> bool:
    """Publish the document as its version unless that version is published; whether it did."""
    return tx.execute("INSERT INTO fare_rule_versions (version, document, digest, effective_from, published_at)"
                      " VALUES (:v, :doc, :digest, :from, :at) ON CONFLICT (version) DO NOTHING",
                      {"v": version, "doc": document, "digest": digest, "from": effective_from,
                       "at": published_at}) == 1


# -- holding tokens ----------------------------------------------------------------------------

HOLD_ROWS = 200  # tokens per upsert


def hold_tokens(tx, tokens, *, at: int) -> None:
    """Hold the tokens' rows (made if missing) until commit: another run holding one of
    them waits for this transaction, and this one for it."""
    ordered = sorted(set(tokens))
    for start in range(0, len(ordered), HOLD_ROWS):
        chunk = ordered[start:start + HOLD_ROWS]
        params = {f"t{n}": token for n, token in enumerate(chunk)}
        values = ", ".join(f"(:t{n}, :at)" for n in range(len(chunk)))
        tx.execute(f"INSERT INTO fare_tokens (token, held_at) VALUES {values}"
                   " ON CONFLICT (token) DO UPDATE SET held_at = excluded.held_at", {**params, "at": at})


# -- charges -------------------------------------------------------------------------------------


def insert_charge(tx, row: dict) -> None:
    """Record a charge (every column of fare_charges)."""
    tx.execute("INSERT INTO fare_charges (id, token, trip_id, seq, local_day, week_start, at, route, stop,"
               " terminal_id, merchant_id, wallet_id, amount, currency, rules_version, status, transfer_id,"
               " statement, created_at, settled_at) VALUES (:id, :token, :trip_id, :seq, :local_day, :week_start,"
               " :at, :route, :stop, :terminal_id, :merchant_id, :wallet_id, :amount, :currency, :rules_version,"
               " :status, :transfer_id, :statement, :created_at, :settled_at)", row)


def charge(tx, charge_id: str) -> dict | None:
    return tx.one("SELECT * FROM fare_charges WHERE id = :id", {"id": charge_id})


def owing_tokens(tx, token: str | None = None) -> list[str]:
    """The tokens with unpaid charges (just `token`, if given, when it has some)."""
    return [r["token"] for r in tx.query(
        "SELECT DISTINCT token FROM fare_charges WHERE status = 'unpaid' AND (CAST(:t AS TEXT) IS NULL OR token = :t)"
        " ORDER BY token", {"t": token})]


def unpaid_charges(tx, token: str | None = None) -> list[dict]:
    """The unpaid charges (of `token`, if given), per token oldest first."""
    return tx.query("SELECT * FROM fare_charges WHERE status = 'unpaid' AND (CAST(:t AS TEXT) IS NULL OR token = :t)"
                    " ORDER BY token, at, trip_id, seq", {"t": token})


def owes(tx, token: str) -> bool:
    return tx.one("SELECT 1 FROM fare_charges WHERE token = :t AND status = 'unpaid'", {"t": token}) is not None


def settle_charge(tx, *, charge_id: str, status: str, wallet_id: str, transfer_id: str,
                  settled_at: int | None) -> bool:
    """Mark an unpaid charge paid (status, by the wallet, under the transfer); False if it
    was not unpaid (any more)."""
    return tx.execute("UPDATE fare_charges SET status = :s, wallet_id = :w, transfer_id = :x, settled_at = :t"
                      " WHERE id = :id AND status = 'unpaid'",
                      {"s": status, "w": wallet_id, "x": transfer_id, "t": settled_at, "id": charge_id}) == 1


def week_charged_besides(tx, *, token: str, week_start: str, day: str) -> int:
    """What the token's charges of the week cost on its days other than `day`."""
    return int(tx.one("SELECT COALESCE(SUM(amount), 0) AS s FROM fare_charges WHERE token = :t"
                      " AND week_start = :w AND local_day <> :d", {"t": token, "w": week_start, "d": day})["s"])


def day_charged_by_trip(tx, *, token: str, day: str) -> dict[str, tuple[int, int]]:
    """The token's charges of the day per trip id: (amount charged so far, its last seq)."""
    return {r["trip_id"]: (int(r["amount"]), int(r["seq"])) for r in tx.query(
        "SELECT trip_id, SUM(amount) AS amount, MAX(seq) AS seq FROM fare_charges"
        " WHERE token = :t AND local_day = :d GROUP BY trip_id", {"t": token, "d": day})}


def terminal_merchants(tx) -> dict[str, str]:
    """terminal id -> the merchant (operator) running it."""
    return {r["id"]: r["merchant_id"] for r in tx.query("SELECT id, merchant_id FROM terminals")}


# -- reading -----------------------------------------------------------------------------------

_OF_WALLET = "(wallet_id = :w OR token IN (SELECT token FROM fare_card_links WHERE wallet_id = :w))"


def wallet_charges(tx, *, wallet_id: str, limit: int, status: str | None = None) -> list[dict]:
    """Up to limit charges the wallet paid or of tokens linked to it now (of that status, if
    given), newest first."""
    return tx.query(f"SELECT * FROM fare_charges WHERE {_OF_WALLET} AND (CAST(:s AS TEXT) IS NULL OR status = :s)"
                    " ORDER BY at DESC, trip_id DESC, seq DESC LIMIT :limit",
                    {"w": wallet_id, "s": status, "limit": limit})


def wallet_owes(tx, wallet_id: str) -> int:
    """What the tokens linked to the wallet owe."""
    return int(tx.one("SELECT COALESCE(SUM(amount), 0) AS s FROM fare_charges WHERE status = 'unpaid'"
                      " AND token IN (SELECT token FROM fare_card_links WHERE wallet_id = :w)", {"w": wallet_id})["s"])


def day_by_route(tx, *, day: str, merchant_id: str | None = None) -> list[dict]:
    """A local day's charges per route and currency: trips, free_trips, collected, unpaid."""
    return tx.query(
        "SELECT route, currency, COUNT(DISTINCT token || '/' || trip_id) AS trips,"
        " SUM(CASE WHEN status IN ('charged', 'settled') THEN amount ELSE 0 END) AS collected,"
        " SUM(CASE WHEN status = 'unpaid' THEN amount ELSE 0 END) AS unpaid,"
        " SUM(CASE WHEN status = 'free' THEN 1 ELSE 0 END) AS free_trips"
        " FROM fare_charges WHERE local_day = :d AND (CAST(:m AS TEXT) IS NULL OR merchant_id = :m)"
        " GROUP BY route, currency ORDER BY route, currency", {"d": day, "m": merchant_id})


def day_by_route_and_hour(tx, *, day: str, merchant_id: str | None = None) -> list[dict]:
    """A local day's charges per route, UTC hour (unix seconds at its start) and currency:
    trips, collected, unpaid."""
    return tx.query(
        "SELECT route, (at / 3600) * 3600 AS hour, currency, COUNT(DISTINCT token || '/' || trip_id) AS trips,"
        " SUM(CASE WHEN status IN ('charged', 'settled') THEN amount ELSE 0 END) AS collected,"
        " SUM(CASE WHEN status = 'unpaid' THEN amount ELSE 0 END) AS unpaid"
        " FROM fare_charges WHERE local_day = :d AND (CAST(:m AS TEXT) IS NULL OR merchant_id = :m)"
        " GROUP BY route, (at / 3600) * 3600, currency ORDER BY route, hour, currency", {"d": day, "m": merchant_id})
