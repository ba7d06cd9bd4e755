"""Ledger queries: accounts, transfers and postings.

Owns `ledger_accounts`, `ledger_transfers` and `ledger_postings` (migration
0001). gateway/core/ledger.py decides; this module reads and writes rows. Times are
ISO 8601 UTC text.

Many writers at once hold the ledger's rules through the database:
- no overdraft: the UPDATE that debits an account carries the funds check in
  its WHERE clause (and the table a CHECK), so two debits racing on one
  account are judged one after the other on the row as it is then;
- a transfer id is stored once (primary key), and a pending transfer is
  resolved once (`pending_id` UNIQUE): the loser of a race gets
  IntegrityError and the ledger replays or refuses;
- gateway/core/ledger.py makes the debit and credit updates of one movement in
  account id order, so two opposite movements never wait on each other in a
  circle.
"""
from __future__ import annotations

_ACCOUNT_COLUMNS = (
    "id, kind, currency, owner_id, allow_negative, debits_posted, credits_posted,"
    " debits_pending, credits_pending, postings_count, created_at"
)
_TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, currency, code, kind, pending_id,"
    " timeout_seconds, expires_at, metadata, created_at"
)
_TRANSFER_FIELDS = tuple(_TRANSFER_COLUMNS.split(", "))
# what a money-moving update hands back: the account's posting number and balance now
_MOVED = " RETURNING id, postings_count, credits_posted - debits_posted AS balance"
# Each update refuses (changes no row) when the account is in another currency or its
# total would pass :max; a debit also when a non-negative account lacks the funds.
_LIMITS = " WHERE id = :id AND currency = :currency"
_FUNDS = " AND (allow_negative = 1 OR credits_posted - debits_posted - debits_pending >= :amount)"
_MOVES = {
    ("debit", "posted"):
        "UPDATE ledger_accounts SET debits_posted = debits_posted + :amount, postings_count = postings_count + :n"
        + _LIMITS + " AND debits_posted + debits_pending + :amount <= :max" + _FUNDS + _MOVED,
    ("debit", "pending"):
        "UPDATE ledger_accounts SET debits_pending = debits_pending + :amount"
        + _LIMITS + " AND debits_posted + debits_pending + :amount <= :max" + _FUNDS + _MOVED,
    ("credit", "posted"):
        "UPDATE ledger_accounts SET credits_posted = credits_posted + :amount, postings_count = postings_count + :n"
        + _LIMITS + " AND credits_posted + credits_pending + :amount <= :max" + _MOVED,
    ("credit", "pending"):
        "UPDATE ledger_accounts SET credits_pending = credits_pending + :amount"
        + _LIMITS + " AND credits_posted + credits_pending + :amount <= :max" + _MOVED,
}
# A hold resolved: its amount leaves the pending column and :posted of it (0 for a void
# or an expiry) enters the posted one, counting a posting when anything was posted.
_SETTLES = {
    "debit": "UPDATE ledger_accounts SET debits_pending = debits_pending - :held,"
             " debits_posted = debits_posted + :posted,"
             " postings_count = postings_count + CASE WHEN :posted > 0 THEN 1 ELSE 0 END"
             " WHERE id = :id" + _MOVED,
    "credit": "UPDATE ledger_accounts SET credits_pending = credits_pending - :held,"
              " credits_posted = credits_posted + :posted,"
              " postings_count = postings_count + CASE WHEN :posted > 0 THEN 1 ELSE 0 END"
              " WHERE id = :id" + _MOVED,
}
_OPEN_PENDING = ("t.kind = 'pending' AND NOT EXISTS"
                 " (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id)")


# -- accounts -----------------------------------------------------------------------------

def insert_account(tx, *, id: str, kind: str, currency: str, owner_id: str | None, allow_negative: bool,
                   created_at: str) -> bool:
    """Open the account unless one with this id exists (then False: the caller compares).

    A writer opening the same id at the same moment waits for the first to commit."""
    return tx.execute(
        "INSERT INTO ledger_accounts (id, kind, currency, owner_id, allow_negative, created_at)"
        " VALUES (:id, :kind, :currency, :owner_id, :allow_negative, :created_at) ON CONFLICT (id) DO NOTHING",
        {"id": id, "kind": kind, "currency": currency, "owner_id": owner_id,
         "allow_negative": int(allow_negative), "created_at": created_at}) == 1


def account(tx, account_id: str) -> dict | None:
    return tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = :id", {"id": account_id})


def find_accounts(tx, *, kind: str | None, currency: str | None, owner_id: str | None,
                  limit: int) -> list[dict]:
    """Accounts matching every filter that is not None, oldest first."""
    return tx.query(
        f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts"
        " WHERE (CAST(:kind AS TEXT) IS NULL OR kind = :kind) AND (CAST(:currency AS TEXT) IS NULL OR currency = :currency)"
        " AND (CAST(:owner_id AS TEXT) IS NULL OR owner_id = :owner_id)"
        " ORDER BY created_at, id LIMIT :limit",
        {"kind": kind, "currency": currency, "owner_id": owner_id, "limit": limit})


def all_accounts(tx) -> list[dict]:
    return tx.query(f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts ORDER BY id")


def move(tx, *, side: str, column: str, account_id: str, amount: int, currency: str,
         max_total: int, postings: int = 1) -> dict | None:
    """Add `amount` to the account's debits or credits (`side`), posted or pending
    (`column`), counting `postings` postings when posted; its posting number and balance
    after, or None when its currency, its limit or (for a debit) its funds refuse."""
    return tx.one(_MOVES[side, column],
                  {"id": account_id, "amount": amount, "currency": currency, "max": max_total, "n": postings})


def settle_hold(tx, *, side: str, account_id: str, held: int, posted: int) -> dict:
    """Take a resolved hold of `held` off the account's pending `side` and post `posted` of it."""
    return tx.one(_SETTLES[side], {"id": account_id, "held": held, "posted": posted})


def lapsed_holds(tx, *, at: str, limit: int) -> list[str]:
    """Ids of unresolved pending transfers expired by `at`, oldest first."""
    return [row["id"] for row in tx.query(
        f"SELECT t.id FROM ledger_transfers t WHERE {_OPEN_PENDING} AND t.expires_at <= :at"
        " ORDER BY t.expires_at, t.id LIMIT :limit",
        {"at": at, "limit": limit})]


def lapsed_holds_of(tx, *, account_id: str, at: str, limit: int) -> list[str]:
    """lapsed_holds() of one account, on either side."""
    return [row["id"] for row in tx.query(
        f"SELECT t.id FROM ledger_transfers t WHERE {_OPEN_PENDING} AND t.expires_at <= :at"
        " AND (t.debit_account_id = :a OR t.credit_account_id = :a)"
        " ORDER BY t.expires_at, t.id LIMIT :limit",
        {"at": at, "a": account_id, "limit": limit})]


# -- transfers ----------------------------------------------------------------------------

def insert_transfer(tx, *, id: str, debit_account_id: str, credit_account_id: str, amount: int,
                    currency: str, code: str, kind: str, pending_id: str | None, timeout_seconds: int | None,
                    expires_at: str | None, metadata: str | None, created_at: str) -> None:
    """IntegrityError when the id (or, for a resolution, the pending id) is taken, or an account is unknown."""
    tx.execute(
        f"INSERT INTO ledger_transfers ({_TRANSFER_COLUMNS}) VALUES (:id, :debit_account_id,"
        " :credit_account_id, :amount, :currency, :code, :kind, :pending_id, :timeout_seconds, :expires_at,"
        " :metadata, :created_at)",
        {"id": id, "debit_account_id": debit_account_id, "credit_account_id": credit_account_id,
         "amount": amount, "currency": currency, "code": code, "kind": kind, "pending_id": pending_id,
         "timeout_seconds": timeout_seconds, "expires_at": expires_at, "metadata": metadata,
         "created_at": created_at})


def insert_transfers(tx, rows: list[dict]) -> None:
    """insert_transfer() of each row (dicts of its keyword arguments) in one bulk statement."""
    tx.insert_many("ledger_transfers", [{c: row[c] for c in _TRANSFER_FIELDS} for row in rows])


def transfer(tx, transfer_id: str) -> dict | None:
    return tx.one(f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = :id", {"id": transfer_id})


def resolution(tx, pending_id: str) -> dict | None:
    """The transfer that resolved a pending one (id, kind, amount), if any."""
    return tx.one("SELECT id, kind, amount FROM ledger_transfers WHERE pending_id = :id", {"id": pending_id})


# -- postings -----------------------------------------------------------------------------

_POSTING_COLUMNS = ("account_id", "seq", "transfer_id", "side", "amount", "balance_after", "created_at")


def insert_postings(tx, rows: list[dict]) -> None:
    """The postings (dicts of account_id, seq, transfer_id, side, amount, balance_after,
    created_at) in one bulk insert: a movement's debit and credit, a settlement's legs."""
    tx.insert_many("ledger_postings", [{c: row[c] for c in _POSTING_COLUMNS} for row in rows])


def postings_before(tx, *, account_id: str, before_seq: int, limit: int) -> list[dict]:
    """The account's postings numbered below `before_seq`, newest first, with their transfers' fields."""
    return tx.query(
        "SELECT p.seq, p.transfer_id, p.side, p.amount, p.balance_after, p.created_at, t.code, t.kind,"
        " t.debit_account_id, t.credit_account_id"
        " FROM ledger_postings p JOIN ledger_transfers t ON t.id = p.transfer_id"
        " WHERE p.account_id = :account AND p.seq < :before ORDER BY p.seq DESC LIMIT :n",
        {"account": account_id, "before": before_seq, "n": limit})


# -- the check's sums ---------------------------------------------------------------------

def counts(tx) -> dict:
    """transfers, postings and open_pending: how many of each."""
    return tx.one(
        "SELECT (SELECT COUNT(*) FROM ledger_transfers) AS transfers,"
        " (SELECT COUNT(*) FROM ledger_postings) AS postings,"
        f" (SELECT COUNT(*) FROM ledger_transfers t WHERE {_OPEN_PENDING}) AS open_pending")


def posting_sums(tx) -> dict[str, dict]:
    """Per account id: its postings' count n, last seq, and sums of debits and credits."""
    return {row["account_id"]: row for row in tx.query(
        "SELECT account_id, COUNT(*) AS n, MAX(seq) AS last,"
        " SUM(CASE WHEN side = 'debit' THEN amount ELSE 0 END) AS debits,"
        " SUM(CASE WHEN side = 'credit' THEN amount ELSE 0 END) AS credits"
        " FROM ledger_postings GROUP BY account_id")}


def open_holds(tx) -> tuple[dict[str, int], dict[str, int]]:
    """What unresolved pending transfers hold, per debit account and per credit account."""
    debits = {row["id"]: row["total"] for row in tx.query(
        "SELECT t.debit_account_id AS id, SUM(t.amount) AS total FROM ledger_transfers t"
        f" WHERE {_OPEN_PENDING} GROUP BY t.debit_account_id")}
    credits = {row["id"]: row["total"] for row in tx.query(
        "SELECT t.credit_account_id AS id, SUM(t.amount) AS total FROM ledger_transfers t"
        f" WHERE {_OPEN_PENDING} GROUP BY t.credit_account_id")}
    return debits, credits


def last_balances(tx) -> dict[str, int]:
    """Per account id, the balance its latest posting says."""
    return {row["account_id"]: row["balance_after"] for row in tx.query(
        "SELECT p.account_id, p.balance_after FROM ledger_postings p"
        " JOIN ledger_accounts a ON a.id = p.account_id AND p.seq = a.postings_count")}


def resolved_twice(tx) -> list[dict]:
    """pending_id and n of each pending transfer with more than one resolution."""
    return tx.query("SELECT pending_id, COUNT(*) AS n FROM ledger_transfers WHERE pending_id IS NOT NULL"
                    " GROUP BY pending_id HAVING COUNT(*) > 1")


def mismatched_resolutions(tx) -> list[dict]:
    """Resolutions whose accounts, currency or amount do not match their pending transfer."""
    return tx.query(
        "SELECT r.id, r.kind, r.amount, p.kind AS held_kind, p.amount AS held_amount"
        " FROM ledger_transfers r LEFT JOIN ledger_transfers p ON p.id = r.pending_id"
        " WHERE r.pending_id IS NOT NULL AND (p.id IS NULL OR p.kind <> 'pending'"
        " OR p.debit_account_id <> r.debit_account_id OR p.credit_account_id <> r.credit_account_id"
        " OR p.currency <> r.currency OR (r.kind = 'post_pending' AND r.amount > p.amount)"
        " OR (r.kind <> 'post_pending' AND r.amount <> p.amount))")


def transfer_postings(tx) -> list[dict]:
    """Per transfer: its postings n, and d / c, the postings that match its debit / credit."""
    return tx.query(
        "SELECT t.id, t.kind, COUNT(p.transfer_id) AS n,"
        " SUM(CASE WHEN p.side = 'debit' AND p.account_id = t.debit_account_id"
        "     AND p.amount = t.amount THEN 1 ELSE 0 END) AS d,"
        " SUM(CASE WHEN p.side = 'credit' AND p.account_id = t.credit_account_id"
        "     AND p.amount = t.amount THEN 1 ELSE 0 END) AS c"
        " FROM ledger_transfers t LEFT JOIN ledger_postings p ON p.transfer_id = t.id"
        " GROUP BY t.id, t.kind")


def cross_currency_transfers(tx) -> list[dict]:
    """Transfers (id, currency) that touch an account of another currency."""
    return tx.query(
        "SELECT t.id, t.currency FROM ledger_transfers t"
        " JOIN ledger_accounts d ON d.id = t.debit_account_id"
        " JOIN ledger_accounts c ON c.id = t.credit_account_id"
        " WHERE d.currency <> t.currency OR c.currency <> t.currency")
