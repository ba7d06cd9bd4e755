"""Issuer queries: issuer keys, certified cards, the deny-list and its versions.

Owns `issuer_keys`, `issuer_cards`, `issuer_deny_list`, `issuer_deny_list_changes`
(migration 0004) and the deny-list's version counter `issuer_deny_list_version`
(migration 0015). Reads and sets `wallets.status` for the remote lock.
gateway/core/issuer.py decides; this module only reads and writes rows. Times are
unix seconds.

Many writers at once, on any node:
- deny-list versions: a change first takes the counter row's lock
  (`lock_deny_list`: FOR UPDATE on PostgreSQL; SQLite's writer is alone), so
  changes to the list happen one at a time and each advances the counter with
  `UPDATE ... SET version = version + 1 RETURNING`; no two changes share a
  version (it is also the changes' primary key);
- a card's id and its public key are unique (primary key, UNIQUE): a card is
  inserted with ON CONFLICT DO NOTHING and the caller learns whether it was;
- issuing a card holds its wallet's row (FOR SHARE on PostgreSQL) until commit,
  so a wallet locked meanwhile either waits for the card (and then denies it)
  or is seen locked (and gets no card).
"""
from __future__ import annotations

# -- keys ------------------------------------------------------------------------------


def key_status(tx, key_id: str) -> str | None:
    row = tx.one("SELECT status FROM issuer_keys WHERE key_id = :k", {"k": key_id})
    return row and row["status"]


def retire_other_keys(tx, key_id: str) -> None:
    """Every active key but key_id becomes retired (still published)."""
    tx.execute("UPDATE issuer_keys SET status = 'retired' WHERE status = 'active' AND key_id <> :k",
               {"k": key_id})


def activate_key(tx, *, key_id: str, public_key: str, created_at: int) -> None:
    """Publish the key as active: a new row, or a known key made active again."""
    tx.execute("INSERT INTO issuer_keys (key_id, public_key, status, created_at)"
               " VALUES (:k, :pk, 'active', :at)"
               " ON CONFLICT (key_id) DO UPDATE SET status = 'active'",
               {"k": key_id, "pk": public_key, "at": created_at})


def published_keys(tx) -> list[dict]:
    """Every issuer key, active first, newest first."""
    return tx.query("SELECT * FROM issuer_keys ORDER BY status, created_at DESC, key_id")


# -- wallets ---------------------------------------------------------------------------


_HELD_WALLET = {"sqlite": "SELECT status FROM wallets WHERE id = :id",
                "postgresql": "SELECT status FROM wallets WHERE id = :id FOR SHARE"}


def held_wallet_status(tx, wallet_id: str) -> str | None:
    """The wallet's status, its row held against a change of status until commit."""
    row = tx.one(_HELD_WALLET[tx.dialect], {"id": wallet_id})
    return row and row["status"]


def set_wallet_status(tx, wallet_id: str, status: str) -> bool:
    """Give the wallet this status; False if it had it already (or is not there)."""
    return tx.execute("UPDATE wallets SET status = :s WHERE id = :id AND status <> :s",
                      {"id": wallet_id, "s": status}) == 1


# -- cards -----------------------------------------------------------------------------


def card_by_public_key(tx, public_key: str) -> dict | None:
    return tx.one("SELECT * FROM issuer_cards WHERE public_key = :pk", {"pk": public_key})


def insert_card(tx, *, card_id: str, wallet_id: str, public_key: str, issuer_key_id: str,
                not_after: int, certificate: str, created_at: int) -> bool:
    """Insert the card; False, inserting nothing, if its card id or public key is taken."""
    return tx.execute("INSERT INTO issuer_cards (card_id, wallet_id, public_key, issuer_key_id, not_after,"
                      " certificate, created_at) VALUES (:card_id, :wallet_id, :public_key, :issuer_key_id,"
                      " :not_after, :certificate, :created_at) ON CONFLICT DO NOTHING",
                      {"card_id": card_id, "wallet_id": wallet_id, "public_key": public_key,
                       "issuer_key_id": issuer_key_id, "not_after": not_after,
                       "certificate": certificate, "created_at": created_at}) == 1


def wallet_cards(tx, wallet_id: str) -> list[dict]:
    return tx.query("SELECT * FROM issuer_cards WHERE wallet_id = :w ORDER BY created_at, card_id",
                    {"w": wallet_id})


def denied_card_ids(tx, wallet_id: str) -> list[str]:
    """The wallet's cards that are on the deny-list, in card id order."""
    rows = tx.query("SELECT c.card_id FROM issuer_cards c JOIN issuer_deny_list d ON d.entry = c.card_id"
                    " WHERE c.wallet_id = :w ORDER BY c.card_id", {"w": wallet_id})
    return [r["card_id"] for r in rows]


# -- the deny-list ---------------------------------------------------------------------


def deny_list_version(tx) -> int:
    return tx.one("SELECT version FROM issuer_deny_list_version WHERE id = 1")["version"]


_LOCK_VERSION = {"sqlite": "SELECT version FROM issuer_deny_list_version WHERE id = 1",
                 "postgresql": "SELECT version FROM issuer_deny_list_version WHERE id = 1 FOR UPDATE"}


def lock_deny_list(tx) -> int:
    """The deny-list's version, its counter locked until commit: other changes to the
    list wait here, and what this transaction reads next includes theirs."""
    return tx.one(_LOCK_VERSION[tx.dialect])["version"]


def next_deny_list_version(tx) -> int:
    """Advance the deny-list's version by one; the new version."""
    return tx.query("UPDATE issuer_deny_list_version SET version = version + 1 WHERE id = 1"
                    " RETURNING version")[0]["version"]


def insert_change(tx, *, version: int, entry: str, kind: str, action: str, reason: str | None,
                  created_at: int) -> None:
    tx.execute("INSERT INTO issuer_deny_list_changes (version, entry, kind, action, reason, created_at)"
               " VALUES (:v, :entry, :kind, :action, :reason, :at)",
               {"v": version, "entry": entry, "kind": kind, "action": action, "reason": reason,
                "at": created_at})


def denied_entry(tx, entry: str) -> dict | None:
    """The deny-list's row for entry (kind, reason, source, wallet_id, version, created_at), or None."""
    return tx.one("SELECT * FROM issuer_deny_list WHERE entry = :e", {"e": entry})


def insert_entry(tx, *, entry: str, kind: str, reason: str, source: str, wallet_id: str | None,
                 version: int, created_at: int) -> None:
    tx.execute("INSERT INTO issuer_deny_list (entry, kind, reason, source, wallet_id, version, created_at)"
               " VALUES (:entry, :kind, :reason, :source, :wallet_id, :version, :at)",
               {"entry": entry, "kind": kind, "reason": reason, "source": source, "wallet_id": wallet_id,
                "version": version, "at": created_at})


def delete_entry(tx, entry: str) -> None:
    tx.execute("DELETE FROM issuer_deny_list WHERE entry = :e", {"e": entry})


def denied_entries(tx) -> list[dict]:
    """Everything on the deny-list, oldest version first, every column."""
    return tx.query("SELECT * FROM issuer_deny_list ORDER BY version")


def entries_from(tx, *, wallet_id: str, source: str) -> list[str]:
    """The entries source put on the deny-list for the wallet, oldest first."""
    rows = tx.query("SELECT entry FROM issuer_deny_list WHERE wallet_id = :w AND source = :s ORDER BY version",
                    {"w": wallet_id, "s": source})
    return [r["entry"] for r in rows]


def changes_since(tx, version: int) -> list[dict]:
    """The deny-list's changes after version, in order."""
    return tx.query("SELECT * FROM issuer_deny_list_changes WHERE version > :v ORDER BY version", {"v": version})
