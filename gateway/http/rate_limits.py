"""Request rates per credential (OWASP API4): 429 with Retry-After, in the one error shape.

Each merchant key's, wallet's and terminal's requests are counted in fixed one-minute
windows in the database (gateway/store/rate_limits.py), so the limit is one for the
whole deployment however many gateway nodes and workers serve it: a local counter
would let each of N nodes pass the limit. A request over the limit answers 429
`rate_limited` with Retry-After (the seconds until the window ends) and does nothing;
its count is rolled back with it, so a caller that keeps knocking does not push its
next window back. A fixed window lets a caller send up to twice its limit across a
window's edge; the limits are sized with that in mind.

Buckets and their limits (gateway.config, the operator's settings; 0 is no limit):
- "requests": every authenticated request of a merchant, wallet or terminal
  (rate_limit_per_minute); the operator's own key is not limited;
- "bill_lookups": a wallet's lookups of bills by consumer or bill number, in the API
  and on the wallet page (bill_lookups_per_minute), so that guessing numbers is slow.

Cost: one upsert per counted request, made in a write the request makes anyway where
there is one: a terminal's in the transaction that spends its request's nonce, an
idempotent POST's (payments, top-ups, ...) in the transaction that claims its key.
Only a merchant's or wallet's other requests (GETs, DELETE) pay a write of their own.
bench/rate_limit_bench.py measures both on each backend.
"""
from __future__ import annotations

from gateway.http.errors import ApiError
from gateway.store import rate_limits as rate_db

WINDOW_SECONDS = 60


def too_many(bucket: str, limit: int, retry_after: int) -> ApiError:
    what = "bill lookups by number" if bucket == "bill_lookups" else "requests"
    err = ApiError(429, "rate_limit_error", "rate_limited",
                   f"Too many {what}: at most {limit} a minute. Nothing was done; retry after {retry_after} s.")
    err.retry_after = retry_after
    return err


def count(tx, *, bucket: str, caller_id: str, limit: int, now: int) -> None:
    """Count one request of caller_id in bucket's current window; 429 when that passes limit
    (raised inside tx, so the count and everything else tx did roll back with it)."""
    if limit <= 0:
        return
    start = now - now % WINDOW_SECONDS
    key = f"{bucket}:{caller_id}"
    hits = rate_db.hit(tx, bucket=key, window_start=start)
    if hits == 1:  # this window's first: the bucket's older ones are done with
        rate_db.forget_before(tx, bucket=key, window_start=start)
    if hits > limit:
        raise too_many(bucket, limit, start + WINDOW_SECONDS - now)


BEARER = ("merchant", "wallet")  # counted here; a terminal's requests with its nonce; the operator's not at all


def count_bearer(tx, rt, caller, now: int) -> None:
    """Count a merchant's or wallet's request in a write it makes anyway (an idempotent POST's)."""
    if caller.kind in BEARER:
        count(tx, bucket="requests", caller_id=caller.id, limit=rt.config.rate_limit_per_minute, now=now)


def check(rt, caller) -> None:
    """Count a merchant's or wallet's request in a write of its own (see count)."""
    _count_apart(rt, "requests", caller.id, rt.config.rate_limit_per_minute)


def check_bill_lookup(rt, wallet_id: str) -> None:
    """Count a wallet's lookup of bills by consumer or bill number (API or wallet page)."""
    _count_apart(rt, "bill_lookups", wallet_id, rt.config.bill_lookups_per_minute)


def _count_apart(rt, bucket: str, caller_id: str, limit: int) -> None:
    if limit > 0:
        now = int(rt.now().timestamp())
        rt.store.write(lambda tx: count(tx, bucket=bucket, caller_id=caller_id, limit=limit, now=now))
