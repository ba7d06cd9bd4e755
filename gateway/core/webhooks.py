"""Signed webhooks: endpoints, the durable outbox and its retry schedule.

A payment or refund calls `emit(tx, ...)` inside the transaction that makes it, so the
event is committed with the money movement or not at all. `emit` writes the event (its
JSON body fixed once, so every retry sends the same bytes) and one delivery per
subscribed endpoint. The deliverer (gateway.http.delivery) then, in a loop of its own:

1. `claim`s due deliveries for a lease (status `delivering`, attempts + 1), committed;
2. POSTs each body with `Tapstack-Signature` (protocol.webhook_signature), outside any
   transaction;
3. `record`s the attempt: 2xx is `succeeded`; anything else is retried after an
   exponential backoff with jitter, until the policy's attempt limit marks it `failed`.

At least once: a deliverer that dies between 1 and 3 leaves its claims to expire, and the
next claim takes them again. Receivers drop duplicates by the event id (`evt_...`),
which also travels in the `Tapstack-Event-Id` header.

Everything here takes a transaction and plain values; `now` is a timezone-aware UTC
datetime. The POSTs, the clock and the loop are the deliverer's.
"""
from __future__ import annotations

import json
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

from gateway.core import iso, new_id, sealing, unix
from gateway.core.errors import Conflict, Invalid, not_found
from gateway.store import webhooks as webhooks_db
from protocol import webhook_signature

EVENT_TYPES = ("payment.succeeded", "refund.succeeded", "bill.paid")
ALL_TYPES = "*"
SIGNATURE_HEADER = "Tapstack-Signature"
EVENT_ID_HEADER = "Tapstack-Event-Id"
MAX_URL_LENGTH = 2048
SEAL = "webhook_seal"          # the named secret (gateway.config) signing secrets are sealed under
MAX_ENDPOINTS = 16             # enabled endpoints per merchant, unless the operator sets another limit
DEFAULT_ROLL_SECONDS = 24 * 3600
MAX_ROLL_SECONDS = 7 * 24 * 3600


# --- endpoints -------------------------------------------------------------------------

def check_url(url: Any) -> str:
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise Invalid("invalid_url", "url must be an http(s) URL.", "url")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise Invalid("invalid_url", "url must be an http(s) URL with a host and no credentials.", "url")
    return url


def check_event_types(event_types: Any) -> list[str]:
    if event_types is None:
        return [ALL_TYPES]
    if (not isinstance(event_types, list) or not event_types
            or not all(isinstance(t, str) for t in event_types)):
        raise Invalid("invalid_event_types", "event_types must be a non-empty list of event types.",
                           "event_types")
    unknown = [t for t in event_types if t != ALL_TYPES and t not in EVENT_TYPES]
    if unknown:
        raise Invalid("invalid_event_types",
                           f"Unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}, *.",
                           "event_types")
    return sorted(set(event_types))


def _endpoint_view(row: dict) -> dict:
    return {"id": row["id"], "object": "webhook_endpoint", "url": row["url"],
            "event_types": row["event_types"].split(), "status": row["status"],
            "created_at": iso(row["created_at"]),
            "previous_secret_expires_at": iso(row["previous_secret_expires_at"])
            if row.get("previous_secret_expires_at") else None}


def _context(endpoint_id: str) -> str:
    return f"webhook_endpoint\n{endpoint_id}"


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def create_endpoint(tx, *, merchant_id: str, url: str, event_types: list[str] | None, now, seal_key: bytes,
                    max_endpoints: int = MAX_ENDPOINTS) -> dict:
    """Register an endpoint; the answer carries its signing secret, which is never shown again
    and is stored sealed under seal_key. A merchant has at most max_endpoints enabled ones
    (every payment writes a delivery to each)."""
    if webhooks_db.count_enabled_endpoints(tx, merchant_id=merchant_id) >= max_endpoints:
        raise Conflict("too_many_webhook_endpoints",
                       f"A merchant may have at most {max_endpoints} webhook endpoints; delete one first.")
    secret, endpoint_id = new_secret(), new_id("we")
    row = {"id": endpoint_id, "merchant_id": merchant_id, "url": check_url(url),
           "event_types": " ".join(check_event_types(event_types)),
           "secret": sealing.seal(seal_key, secret, _context(endpoint_id)), "status": "enabled",
           "created_at": unix(now)}
    webhooks_db.insert_endpoint(tx, **row)
    return {**_endpoint_view(row), "secret": secret}


def roll_secret(tx, *, merchant_id: str, endpoint_id: str, now, seal_key: bytes,
                expires_in: int = DEFAULT_ROLL_SECONDS) -> dict:
    """Give the endpoint a new signing secret (in the answer, once); the current one keeps
    signing beside it for expires_in seconds (0: stops at once), as Stripe's roll does."""
    at = unix(now)
    secret = new_secret()
    if not webhooks_db.roll_secret(tx, merchant_id=merchant_id, endpoint_id=endpoint_id,
                                   sealed=sealing.seal(seal_key, secret, _context(endpoint_id)),
                                   previous_expires_at=at + expires_in if expires_in else None):
        raise not_found("webhook endpoint", "id")
    row = webhooks_db.endpoint(tx, merchant_id=merchant_id, endpoint_id=endpoint_id)
    return {**_endpoint_view(row), "secret": secret}


def seal_stored_secrets(store, seal_key: bytes) -> int:
    """Seal the signing secrets an older release stored in plain text; how many. Every
    gateway runs this as it starts: idempotent, and safe on several nodes at once (a row
    is sealed only while it still holds the plain secret)."""
    def seal_all(tx) -> int:
        return sum(webhooks_db.seal_secret(tx, endpoint_id=r["id"], plain=r["secret"],
                                           sealed=sealing.seal(seal_key, r["secret"], _context(r["id"])))
                   for r in webhooks_db.plain_secrets(tx))
    return store.write(seal_all)


def list_endpoints(tx, *, merchant_id: str) -> list[dict]:
    return [_endpoint_view(r) for r in webhooks_db.enabled_endpoints(tx, merchant_id=merchant_id)]


def delete_endpoint(tx, *, merchant_id: str, endpoint_id: str, now) -> dict:
    """Disable an endpoint; its undelivered deliveries are dropped as `cancelled`."""
    if not webhooks_db.disable_endpoint(tx, merchant_id=merchant_id, endpoint_id=endpoint_id):
        raise not_found("webhook endpoint", "id")
    webhooks_db.cancel_deliveries(tx, endpoint_id=endpoint_id, now=unix(now))
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


# --- the outbox ------------------------------------------------------------------------

def emit(tx, *, merchant_id: str, event_type: str, data: dict, now) -> str:
    """Record event_type about data for merchant_id in the caller's transaction; its id."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    at = unix(now)
    event_id = new_id("evt")
    # Keys in the order written: as stable as sorting them, without the sort.
    body = json.dumps({"id": event_id, "object": "event", "type": event_type, "created_at": iso(at),
                       "merchant_id": merchant_id, "data": data}, separators=(",", ":"))
    webhooks_db.insert_event(tx, id=event_id, merchant_id=merchant_id, type=event_type, body=body,
                             created_at=at)
    webhooks_db.fan_out(tx, event_id=event_id, event_type=event_type, merchant_id=merchant_id, at=at)
    return event_id


def _event_view(row: dict) -> dict:
    return json.loads(row["body"])


def list_events(tx, *, merchant_id: str, limit: int = 20, after: str | None = None,
                event_type: str | None = None) -> dict:
    """Newest first, cursor-paginated: {"data": [...], "has_more": bool}."""
    cursor = None
    if after:
        cursor = webhooks_db.merchant_event(tx, merchant_id=merchant_id, event_id=after)
        if cursor is None:
            raise Invalid("invalid_cursor", "after is not an event in this list.", "after")
    rows = webhooks_db.events_page(tx, merchant_id=merchant_id, limit=int(limit) + 1,
                                   event_type=event_type or None, before=cursor)
    return {"object": "list", "data": [_event_view(r) for r in rows[:limit]], "has_more": len(rows) > limit}


def get_event(tx, *, merchant_id: str, event_id: str) -> dict:
    row = webhooks_db.merchant_event(tx, merchant_id=merchant_id, event_id=event_id)
    if row is None:
        raise not_found("event", "id")
    return _event_view(row)


def list_deliveries(tx, *, merchant_id: str, event_id: str) -> list[dict]:
    """Each delivery of an event with its attempts, oldest attempt first."""
    get_event(tx, merchant_id=merchant_id, event_id=event_id)
    out = []
    for d in webhooks_db.event_deliveries(tx, event_id=event_id):
        attempts = webhooks_db.delivery_attempts(tx, delivery_id=d["id"])
        out.append({"id": d["id"], "object": "webhook_delivery", "event_id": d["event_id"],
                    "endpoint_id": d["endpoint_id"], "url": d["url"], "status": d["status"],
                    "attempt_count": d["attempts"],
                    "next_attempt_at": iso(d["next_attempt_at"]) if d["status"] == "pending" else None,
                    "completed_at": iso(d["completed_at"]),
                    "attempts": [{**a, "attempted_at": iso(a["attempted_at"])} for a in attempts]})
    return out


# --- deliveries: claims, outcomes, the retry schedule ----------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n (1-based) that fails waits about base * 2**(n-1) seconds, capped."""
    max_attempts: int = 10
    base_seconds: float = 30.0
    cap_seconds: float = 6 * 3600.0

    def delay(self, attempts: int, rand: float) -> int:
        """Seconds to wait after the attempts-th failure; rand in [0, 1) gives the jitter.

        Half the backoff is fixed and half random ("equal jitter"): retries of many
        deliveries that failed together spread out, and none comes back sooner than half.
        """
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        return max(1, round(ceiling / 2 + rand * ceiling / 2))


@dataclass(frozen=True)
class Delivery:
    id: str
    event_id: str
    endpoint_id: str
    url: str
    secret: str
    body: bytes
    attempts: int
    claim: str
    previous_secret: str | None = None   # during a roll: signs beside the new one


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim(tx, *, now, lease_seconds: int, limit: int, seal_key: bytes,
          policy: RetryPolicy = RetryPolicy()) -> list[Delivery]:
    """Take up to limit due deliveries for lease_seconds; each claim counts as an attempt.

    Due: pending and its time has come, or delivering under a lease that expired (its
    deliverer died). A delivery that used up its attempts under expired leases is failed;
    one whose endpoint was deleted meanwhile is cancelled. Deliverers on other nodes
    claiming at the same time take other deliveries (see gateway.store.webhooks).
    """
    at = unix(now)
    webhooks_db.fail_expired_leases(tx, now=at, max_attempts=policy.max_attempts)
    webhooks_db.cancel_due_to_deleted_endpoints(tx, now=at)
    rows = webhooks_db.lease_due_deliveries(tx, now=at, owner=new_id("claim"),
                                            lease_until=at + int(lease_seconds), limit=limit)
    return [Delivery(r["id"], r["event_id"], r["endpoint_id"], r["url"], _open(seal_key, r, "secret"),
                     r["body"].encode("utf-8"), r["attempts"], r["claim"],
                     _open(seal_key, r, "previous_secret") if (r["previous_secret_expires_at"] or 0) > at
                     else None) for r in rows]


def _open(seal_key: bytes, row: dict, column: str) -> str | None:
    """The endpoint's secret in `column`, unsealed (one an older release stored in plain text,
    not sealed yet by a starting gateway, as it is)."""
    stored = row[column]
    if stored is None or not sealing.is_sealed(stored):
        return stored
    return sealing.unseal(seal_key, stored, _context(row["endpoint_id"]))


def record(tx, delivery: Delivery, outcome: Outcome, *, now, rand: float,
           policy: RetryPolicy = RetryPolicy()) -> str:
    """Log one attempt and settle the delivery; its new status.

    If the claim was lost (the lease expired and another deliverer took it), the attempt
    is still logged but the other claim decides the status.
    """
    at = unix(now)
    webhooks_db.insert_attempt(tx, id=new_id("wha"), delivery_id=delivery.id, attempted_at=at,
                               status_code=outcome.status_code, error=outcome.error,
                               duration_ms=int(outcome.duration_ms))
    if outcome.ok:
        status, next_at = "succeeded", None
    elif delivery.attempts >= policy.max_attempts:
        status, next_at = "failed", None
    else:
        status, next_at = "pending", at + policy.delay(delivery.attempts, rand)
    webhooks_db.settle_delivery(tx, delivery_id=delivery.id, owner=delivery.claim, status=status,
                                next_attempt_at=next_at, completed_at=None if next_at else at)
    return webhooks_db.delivery_status(tx, delivery_id=delivery.id)


def request_headers(delivery: Delivery, now) -> dict:
    return {"Content-Type": "application/json", "User-Agent": "tapstack-webhooks/1",
            SIGNATURE_HEADER: webhook_signature.sign(delivery.secret, unix(now), delivery.body,
                                                     *filter(None, [delivery.previous_secret])),
            EVENT_ID_HEADER: delivery.event_id}
