"""Webhook queries: endpoints, the event outbox, deliveries and their attempts.

Owns `webhook_endpoints`, `webhook_events`, `webhook_deliveries` and
`webhook_attempts` (migrations 0003, 0015, 0017). gateway/core/webhooks.py decides; this
module only reads and writes rows. Times are unix seconds.

Many deliverers at once, on any node:
- an event reaches each endpoint once: a delivery is unique per (event,
  endpoint) (migration 0015) and the fan-out inserts with ON CONFLICT DO NOTHING;
- one deliverer holds a delivery at a time: `lease_due_deliveries` takes due
  rows for a lease (owner `claim`, expiry `lease_until`); on PostgreSQL it picks
  them with FOR UPDATE SKIP LOCKED, so deliverers running together take
  different rows without waiting for each other; a lease that expired (its
  deliverer died) is due again;
- only the lease holder settles a delivery: `settle_delivery` updates the row
  only while it still carries the holder's claim.
"""
from __future__ import annotations

import functools

# -- endpoints -------------------------------------------------------------------------


def insert_endpoint(tx, *, id: str, merchant_id: str, url: str, event_types: str, secret: str,
                    status: str, created_at: int) -> None:
    tx.execute("INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, secret, status, created_at)"
               " VALUES (:id, :merchant_id, :url, :event_types, :secret, :status, :created_at)",
               {"id": id, "merchant_id": merchant_id, "url": url, "event_types": event_types,
                "secret": secret, "status": status, "created_at": created_at})


def count_enabled_endpoints(tx, *, merchant_id: str) -> int:
    return tx.one("SELECT count(*) AS n FROM webhook_endpoints WHERE merchant_id = :m AND status = 'enabled'",
                  {"m": merchant_id})["n"]


def endpoint(tx, *, merchant_id: str, endpoint_id: str) -> dict | None:
    return tx.one("SELECT * FROM webhook_endpoints WHERE id = :id AND merchant_id = :m",
                  {"id": endpoint_id, "m": merchant_id})


def roll_secret(tx, *, merchant_id: str, endpoint_id: str, sealed: str, previous_expires_at: int | None) -> bool:
    """The merchant's enabled endpoint signs with `sealed` from now on, and with the secret it
    had until previous_expires_at (None: no longer); False if there is no such endpoint."""
    return tx.execute("UPDATE webhook_endpoints SET previous_secret = CASE WHEN CAST(:until AS BIGINT) IS NULL THEN NULL"
                      " ELSE secret END, previous_secret_expires_at = :until, secret = :sealed"
                      " WHERE id = :id AND merchant_id = :m AND status = 'enabled'",
                      {"until": previous_expires_at, "sealed": sealed, "id": endpoint_id, "m": merchant_id}) == 1


def plain_secrets(tx) -> list[dict]:
    """Endpoints whose secret an older release stored unsealed (id, secret)."""
    return tx.query("SELECT id, secret FROM webhook_endpoints WHERE substr(secret, 1, 6) = 'whsec_'")


def seal_secret(tx, *, endpoint_id: str, plain: str, sealed: str) -> int:
    """Replace the endpoint's plain secret with its sealed form, if it still holds that one."""
    return tx.execute("UPDATE webhook_endpoints SET secret = :sealed WHERE id = :id AND secret = :plain",
                      {"sealed": sealed, "id": endpoint_id, "plain": plain})


def enabled_endpoints(tx, *, merchant_id: str) -> list[dict]:
    return tx.query("SELECT * FROM webhook_endpoints WHERE merchant_id = :m AND status = 'enabled'"
                    " ORDER BY created_at, id", {"m": merchant_id})


def disable_endpoint(tx, *, merchant_id: str, endpoint_id: str) -> bool:
    """Mark the merchant's enabled endpoint deleted; False if there was none to delete."""
    return tx.execute("UPDATE webhook_endpoints SET status = 'deleted'"
                      " WHERE id = :id AND merchant_id = :m AND status = 'enabled'",
                      {"id": endpoint_id, "m": merchant_id}) == 1


def cancel_deliveries(tx, *, endpoint_id: str, now: int) -> int:
    """Drop the endpoint's undelivered deliveries as `cancelled`; how many."""
    return tx.execute("UPDATE webhook_deliveries SET status = 'cancelled', completed_at = :now, claim = NULL"
                      " WHERE endpoint_id = :id AND status IN ('pending', 'delivering')",
                      {"id": endpoint_id, "now": now})


# -- the outbox ------------------------------------------------------------------------


def insert_event(tx, *, id: str, merchant_id: str, type: str, body: str, created_at: int) -> None:
    tx.execute("INSERT INTO webhook_events (id, merchant_id, type, body, created_at)"
               " VALUES (:id, :m, :type, :body, :at)",
               {"id": id, "m": merchant_id, "type": type, "body": body, "at": created_at})


@functools.lru_cache(maxsize=None)
def _fan_out_sql(event_type: str) -> str:
    """One delivery per enabled endpoint of :m that asked for event_type ("*" is every type).
    Portable SQL: || and LIKE on the space-padded list. The patterns are literals, not
    parameters: SQLite prepares a LIKE with a parameter pattern again at every call. They
    are safe as literals because event types are the gateway's own constants of [a-z.] only.
    A delivery's id is its event's and its endpoint's, and (event, endpoint) is unique."""
    if not all(c.isalpha() and c.islower() or c == "." for c in event_type):
        raise ValueError(f"event type {event_type!r} is not [a-z.]")
    padded = "' ' || event_types || ' '"
    return ("INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts, next_attempt_at,"
            " created_at) SELECT :prefix || substr(id, 4), :e, id, 'pending', 0, :at, :at"
            " FROM webhook_endpoints WHERE merchant_id = :m AND status = 'enabled'"
            f" AND ({padded} LIKE '% {event_type} %' OR {padded} LIKE '% * %')"
            " ON CONFLICT (event_id, endpoint_id) DO NOTHING")


def fan_out(tx, *, event_id: str, event_type: str, merchant_id: str, at: int) -> int:
    """A pending delivery of the event to each of the merchant's endpoints subscribed to
    its type, in one statement whatever their number; how many were made."""
    return tx.execute(_fan_out_sql(event_type),
                      {"prefix": f"whd_{event_id[4:]}_", "e": event_id, "m": merchant_id, "at": at})


def merchant_event(tx, *, merchant_id: str, event_id: str) -> dict | None:
    """The merchant's event (id, type, body, created_at), or None."""
    return tx.one("SELECT * FROM webhook_events WHERE id = :id AND merchant_id = :m",
                  {"id": event_id, "m": merchant_id})


_EVENTS_NEWEST = ("SELECT * FROM webhook_events WHERE merchant_id = :m AND (CAST(:type AS TEXT) IS NULL OR type = :type)"
                  " ORDER BY created_at DESC, id DESC LIMIT :n")
_EVENTS_BEFORE = ("SELECT * FROM webhook_events WHERE merchant_id = :m AND (CAST(:type AS TEXT) IS NULL OR type = :type)"
                  " AND (created_at < :c OR (created_at = :c AND id < :cid))"
                  " ORDER BY created_at DESC, id DESC LIMIT :n")


def events_page(tx, *, merchant_id: str, limit: int, event_type: str | None = None,
                before: dict | None = None) -> list[dict]:
    """Up to limit of the merchant's events, newest first (of event_type, if given);
    those older than the event `before` ({"created_at", "id"}), if given."""
    params = {"m": merchant_id, "type": event_type, "n": int(limit)}
    if before is None:
        return tx.query(_EVENTS_NEWEST, params)
    return tx.query(_EVENTS_BEFORE, {**params, "c": before["created_at"], "cid": before["id"]})


def event_deliveries(tx, *, event_id: str) -> list[dict]:
    """The event's deliveries, oldest first, each with its endpoint's url."""
    return tx.query("SELECT d.*, e.url FROM webhook_deliveries d"
                    " JOIN webhook_endpoints e ON e.id = d.endpoint_id"
                    " WHERE d.event_id = :e ORDER BY d.created_at, d.id", {"e": event_id})


def delivery_attempts(tx, *, delivery_id: str) -> list[dict]:
    """The delivery's attempts, oldest first: attempted_at, status_code, error, duration_ms."""
    return tx.query("SELECT attempted_at, status_code, error, duration_ms FROM webhook_attempts"
                    " WHERE delivery_id = :d ORDER BY attempted_at, id", {"d": delivery_id})


# -- leases ----------------------------------------------------------------------------

# Due: pending and its time has come, or delivering under a lease that expired.
_DUE = ("((status = 'pending' AND next_attempt_at <= :now)"
        " OR (status = 'delivering' AND lease_until <= :now))")

_LEASE = {
    # The writer is alone: pick and lease in one statement.
    "sqlite": ("UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1,"
               " lease_until = :lease_until, claim = :owner WHERE id IN ("
               f"  SELECT id FROM webhook_deliveries WHERE {_DUE}"
               "  ORDER BY next_attempt_at, id LIMIT :n)"),
    # Other deliverers run beside this one: lock the due rows no one else has locked
    # (SKIP LOCKED: theirs are skipped, not waited for), then lease those still due.
    # MATERIALIZED: the locking SELECT runs once, so no more than :n rows are locked.
    "postgresql": ("WITH due AS MATERIALIZED ("
                   f"  SELECT id FROM webhook_deliveries WHERE {_DUE}"
                   "  ORDER BY next_attempt_at, id LIMIT :n FOR UPDATE SKIP LOCKED)"
                   " UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1,"
                   " lease_until = :lease_until, claim = :owner"
                   f" FROM due WHERE webhook_deliveries.id = due.id AND {_DUE}"),
}


def fail_expired_leases(tx, *, now: int, max_attempts: int) -> int:
    """Fail the deliveries whose lease expired after their last allowed attempt; how many."""
    return tx.execute("UPDATE webhook_deliveries SET status = 'failed', completed_at = :now, claim = NULL"
                      " WHERE status = 'delivering' AND lease_until <= :now AND attempts >= :max",
                      {"now": now, "max": max_attempts})


def cancel_due_to_deleted_endpoints(tx, *, now: int) -> int:
    """Cancel due deliveries whose endpoint was deleted: a fan-out that ran beside the
    deletion can have made one after the deletion cancelled the endpoint's others."""
    return tx.execute("UPDATE webhook_deliveries SET status = 'cancelled', completed_at = :now, claim = NULL"
                      " WHERE status = 'pending' AND next_attempt_at <= :now AND endpoint_id IN"
                      " (SELECT id FROM webhook_endpoints WHERE status = 'deleted')", {"now": now})


def lease_due_deliveries(tx, *, now: int, owner: str, lease_until: int, limit: int) -> list[dict]:
    """Lease up to limit due deliveries to owner until lease_until, each lease counting as an
    attempt; the leased ones, oldest due first, with what sending them needs (the endpoint's
    url and secret, the event's body)."""
    tx.execute(_LEASE[tx.dialect], {"now": now, "owner": owner, "lease_until": lease_until, "n": int(limit)})
    return tx.query("SELECT d.id, d.event_id, d.endpoint_id, d.attempts, d.claim, e.url, e.secret,"
                    " e.previous_secret, e.previous_secret_expires_at, ev.body"
                    " FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
                    " JOIN webhook_events ev ON ev.id = d.event_id"
                    " WHERE d.status = 'delivering' AND d.claim = :owner"
                    " ORDER BY d.next_attempt_at, d.id", {"owner": owner})


def insert_attempt(tx, *, id: str, delivery_id: str, attempted_at: int, status_code: int | None,
                   error: str | None, duration_ms: int) -> None:
    tx.execute("INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status_code, error, duration_ms)"
               " VALUES (:id, :d, :at, :code, :err, :ms)",
               {"id": id, "d": delivery_id, "at": attempted_at, "code": status_code, "err": error,
                "ms": duration_ms})


def settle_delivery(tx, *, delivery_id: str, owner: str, status: str, next_attempt_at: int | None,
                    completed_at: int | None) -> bool:
    """Set the delivery's status and end its lease, if owner still holds it; whether it did.
    next_attempt_at None keeps the one it had."""
    return tx.execute("UPDATE webhook_deliveries SET status = :s, claim = NULL, lease_until = NULL,"
                      " next_attempt_at = COALESCE(:next, next_attempt_at), completed_at = :done"
                      " WHERE id = :id AND claim = :owner",
                      {"s": status, "next": next_attempt_at, "done": completed_at,
                       "id": delivery_id, "owner": owner}) == 1


def delivery_status(tx, *, delivery_id: str) -> str | None:
    row = tx.one("SELECT status FROM webhook_deliveries WHERE id = :id", {"id": delivery_id})
    return row and row["status"]
