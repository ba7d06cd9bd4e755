"""The gateway's functional core for the API: plain functions over a Tx and values.

Each service takes the open transaction, the caller and plain values (amounts in
minor units, a currency, `now` as an aware UTC datetime) and returns the resource
as a dict ready for JSON. Nothing here reads a clock or an HTTP request. Objects
that are not the caller's raise not_found, exactly as missing ones do.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

# The largest amount one request may move: 100 million major units (1e10 fen). Far below
# the ledger's own bound on a posting (ledger.MAX_POSTING_AMOUNT), which guards its sums.
MAX_REQUEST_AMOUNT = 10_000_000_000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def unix(now: datetime) -> int:
    return int(now.timestamp())


def iso(seconds: int | None) -> str | None:
    """Unix seconds as an ISO 8601 UTC time, the form every response uses."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

