"""The gateway's HTTP API (blueprints under /v1) and the request parsing they share.

Blueprints stay thin: authenticate (gateway.auth), parse and validate the body here,
call a service in gateway.services over one transaction, return (status, resource).
Bodies are validated strictly: a JSON object, no unknown fields (named in the
message), the right JSON types (a bool is not a number), amounts as positive
integers of minor units no larger than MAX_AMOUNT.
"""
from __future__ import annotations

import json
import re

from flask import request

from gateway.errors import invalid
from protocol import currency as iso4217

# The largest amount one request may move: 100 million major units (1e10 fen).
MAX_AMOUNT = 10_000_000_000
MAX_TEXT = 500
_CURRENCY = re.compile(r"[A-Z]{3}")
_ID = re.compile(r"[a-z]{2,5}_[A-Za-z0-9]{8,64}")


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs):
    # Parsers disagree on which duplicate wins; refuse rather than guess.
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate field {key}")
        seen[key] = value
    return seen


def json_body(required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
    """The request's JSON object, with exactly the allowed fields; an empty body is {}."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        body = {}
    else:
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants,
                              object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise invalid("malformed_json",
                          "The request body is not valid UTF-8 JSON (or repeats a field).") from None
    if not isinstance(body, dict):
        raise invalid("malformed_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise invalid("unknown_parameter", f"Unknown field(s): {', '.join(unknown)}.", unknown[0])
    for name in required:
        if name not in body or body[name] is None:
            raise invalid("missing_parameter", f"Missing required field: {name}.", name)
    return body


def amount(body: dict, name: str = "amount", *, optional: bool = False) -> int | None:
    """A positive integer of minor units, at most MAX_AMOUNT."""
    value = body.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("invalid_amount", f"{name} must be an integer of minor units.", name)
    if value <= 0:
        raise invalid("invalid_amount", f"{name} must be positive.", name)
    if value > MAX_AMOUNT:
        raise invalid("invalid_amount", f"{name} must be at most {MAX_AMOUNT}.", name)
    return value


def currency(body: dict, name: str = "currency") -> str:
    """An ISO 4217 alphabetic code the gateway keeps accounts in."""
    value = body.get(name)
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise invalid("invalid_currency", f"{name} must be an ISO 4217 code such as \"CNY\".", name)
    if not iso4217.is_known(value):
        raise invalid("unknown_currency", f"Unknown or unsupported currency: {value}.", name)
    return value


def text(body: dict, name: str, *, optional: bool = False, max_length: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid("invalid_parameter", f"{name} must be a non-empty string.", name)
    if len(value) > max_length:
        raise invalid("invalid_parameter", f"{name} must be at most {max_length} characters.", name)
    return value


def object_id(body: dict, name: str) -> str:
    """A resource id such as "wal_..." (its existence is the service's to check)."""
    value = body.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise invalid("invalid_parameter", f"{name} must be an id string.", name)
    return value


def integer(body: dict, name: str, *, low: int, high: int, optional: bool = False) -> int | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid("invalid_parameter", f"{name} must be an integer from {low} to {high}.", name)
    return value


def page_args(default_limit: int = 20, max_limit: int = 100) -> tuple[int, str | None]:
    """?limit= and ?after= of a cursor-paginated list that takes no other parameter."""
    _refuse_other_parameters(())
    return _limit_and_after(default_limit, max_limit)


def query(*allowed: str) -> dict:
    """The query of a cursor-paginated list: the parameters among `allowed` that are given
    (and not empty), plus limit (an int) and after; any other parameter is refused."""
    _refuse_other_parameters(allowed)
    limit, after = _limit_and_after(20, 100)
    return {**{name: request.args[name] for name in allowed if request.args.get(name)},
            "limit": limit, "after": after}


def _refuse_other_parameters(allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.args) - set(allowed) - {"limit", "after"})
    if unknown:
        raise invalid("unknown_parameter", f"Unknown query parameter(s): {', '.join(unknown)}.", unknown[0])


def _limit_and_after(default_limit: int, max_limit: int) -> tuple[int, str | None]:
    raw = request.args.get("limit", str(default_limit))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= max_limit:
        raise invalid("invalid_parameter", f"limit must be an integer from 1 to {max_limit}.", "limit")
    after = request.args.get("after") or None
    if after is not None and len(after) > 200:
        raise invalid("invalid_parameter", "after is not a cursor this API gave.", "after")
    return int(raw), after
