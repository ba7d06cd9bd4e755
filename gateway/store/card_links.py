"""Card link queries: one-tap link codes and the cards (tokens) linked to wallets.

Owns `fare_card_links` and `fare_link_codes` (migration 0009); reads `wallets`
(the wallet a token is linked to).
gateway/core/card_links.py decides; this module only reads and writes rows.
Times are unix seconds.

Many writers at once, on any node:
- a link code is spent once: `spend_code` marks it used only while it is unused
  and unexpired, and says whether it did;
- a token is linked to one wallet: `fare_card_links.token` is unique and
  `insert_link` inserts with ON CONFLICT DO NOTHING, so of two links of one token
  at once the second finds the first.
"""
from __future__ import annotations


def insert_code(tx, *, code_hash: str, wallet_id: str, expires_at: int, created_at: int) -> None:
    tx.execute("INSERT INTO fare_link_codes (code_hash, wallet_id, expires_at, used_at, link_id, created_at)"
               " VALUES (:h, :w, :e, NULL, NULL, :at)",
               {"h": code_hash, "w": wallet_id, "e": expires_at, "at": created_at})


def spend_code(tx, *, code_hash: str, now: int) -> str | None:
    """Mark the code used if it is unused and unexpired at now; its wallet id, or None if it was not."""
    rows = tx.query("UPDATE fare_link_codes SET used_at = :now"
                    " WHERE code_hash = :h AND used_at IS NULL AND expires_at > :now RETURNING wallet_id",
                    {"h": code_hash, "now": now})
    return rows[0]["wallet_id"] if rows else None


def set_code_link(tx, *, code_hash: str, link_id: str) -> None:
    """Record the link a spent code made (or found)."""
    tx.execute("UPDATE fare_link_codes SET link_id = :l WHERE code_hash = :h", {"l": link_id, "h": code_hash})


def link_of_token(tx, token: str) -> dict | None:
    return tx.one("SELECT * FROM fare_card_links WHERE token = :t", {"t": token})


def insert_link(tx, *, id: str, token: str, wallet_id: str, token_kind: str, assurance: str,
                terminal_id: str, created_at: int) -> bool:
    """Link the token unless it is linked already (to any wallet); whether this call linked it."""
    return tx.execute("INSERT INTO fare_card_links (id, token, wallet_id, token_kind, assurance, terminal_id,"
                      " created_at) VALUES (:id, :t, :w, :k, :a, :term, :at) ON CONFLICT (token) DO NOTHING",
                      {"id": id, "t": token, "w": wallet_id, "k": token_kind, "a": assurance,
                       "term": terminal_id, "at": created_at}) == 1


def wallet_links(tx, wallet_id: str) -> list[dict]:
    """The wallet's links, oldest first."""
    return tx.query("SELECT * FROM fare_card_links WHERE wallet_id = :w ORDER BY created_at, id", {"w": wallet_id})


def delete_link(tx, *, link_id: str, wallet_id: str) -> bool:
    """Remove the wallet's link; False if the wallet has no such link (now)."""
    return tx.execute("DELETE FROM fare_card_links WHERE id = :id AND wallet_id = :w",
                      {"id": link_id, "w": wallet_id}) == 1


def linked_wallet(tx, token: str) -> dict | None:
    """The wallet row the token is linked to, or None."""
    return tx.one("SELECT w.* FROM fare_card_links l JOIN wallets w ON w.id = l.wallet_id WHERE l.token = :t",
                  {"t": token})
