"""The gateway's HTTP API (blueprints under /v1) and the request parsing they share.

Blueprints stay thin: authenticate (gateway.http.auth), parse and validate the body here,
call a service in gateway.core over one transaction, return (status, resource).
Bodies are validated strictly: JSON sent as application/json (415 otherwise), a JSON
object nested at most MAX_DEPTH deep, no unknown fields (named in the message), the
right JSON types (a bool is not a number), amounts as positive integers of minor
units no larger than gateway.core.MAX_REQUEST_AMOUNT. No string anywhere in a body, a query or a path
may hold NUL or a lone UTF-16 surrogate ("\\ud800" is valid JSON but no text): such
input is refused here, before any service, database or hash sees it. Fields printed
in an EMV QR code (names, cities, labels) take only what a QR field can carry.
"""
from __future__ import annotations

import json
import re

from flask import g, request

from gateway.core import MAX_REQUEST_AMOUNT
from gateway.core.errors import Invalid
from gateway.http.errors import ApiError, no_route
from protocol import currency as iso4217

MAX_BODY_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 1024 * 1024  # the largest body any route takes (POST /v1/taps)
MAX_TEXT = 500
MAX_DEPTH = 32  # a tap batch is 3 deep; deeper nesting is refused before it is walked
_CURRENCY = re.compile(r"[A-Z]{3}")
_ID = re.compile(r"[a-z]{2,5}_[A-Za-z0-9]{8,64}")
# NUL (which PostgreSQL's text cannot hold) and lone surrogates (which UTF-8 cannot encode).
_NOT_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # ... and in a path or query, any control character
# What EMV's common character set allows in a QR field such as the merchant name (59):
# printable ASCII. Local scripts go in the QR's language template (64), not here.
_QR_TEXT = re.compile(r"[ -~]+")
JSON_TYPES = ("application/json",)


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


def _too_deep() -> Invalid:
    return Invalid("malformed_json", f"The request body nests deeper than {MAX_DEPTH} levels.")


def _check_text(value, param: str | None, *, strings: bool = True) -> None:
    """Every string in a parsed body (keys too) is text; nesting is at most MAX_DEPTH deep.
    Iterative, so no input can exhaust the stack. strings=False checks the nesting only
    (for a body whose strings cannot hold what _NOT_TEXT finds, see parsed_body)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _NOT_TEXT.search(item):
                raise Invalid("invalid_text", f"{param or 'A field'} holds NUL or an unpaired UTF-16 surrogate "
                                              "(\\ud800-\\udfff), which is not text.", param)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise _too_deep()
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            if not strings:
                children = [child for child in children if isinstance(child, (dict, list))]
            stack.extend((child, depth + 1) for child in children)


def parsed_body() -> dict | None:
    """The body's JSON object, checked (see the module docstring); None when empty.

    Parsed once per request: a view may look ahead at it before its transaction."""
    if "parsed_body" in g:
        return g.parsed_body
    raw = request.get_data(cache=True)
    if not raw.strip():
        body = None
    elif request.mimetype not in JSON_TYPES:
        raise ApiError(415, "invalid_request_error", "unsupported_media_type",
                       "Send the body as JSON with Content-Type: application/json.", "Content-Type")
    else:
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants,
                              object_pairs_hook=_no_duplicates)
        except RecursionError:
            raise _too_deep() from None
        except (UnicodeDecodeError, ValueError):
            raise Invalid("malformed_json",
                          "The request body is not valid UTF-8 JSON (or repeats a field).") from None
        if not isinstance(body, dict):
            raise Invalid("malformed_json", "The request body must be a JSON object.")
        # NUL and lone surrogates reach a parsed string only through a \u escape: raw ones are
        # refused above (strict JSON takes no raw control character, strict UTF-8 no surrogate).
        # Without one in the body (a tap batch has none) only the nesting is walked.
        strings = b"\\u" in raw
        for key, value in body.items():
            _check_text(key, None, strings=strings)
            _check_text(value, key, strings=strings)
    g.parsed_body = body
    return body


def json_body(required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
    """The request's JSON object, with exactly the allowed fields; an empty body is {}."""
    body = parsed_body() or {}
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise Invalid("unknown_parameter", f"Unknown field(s): {', '.join(unknown)}.", unknown[0])
    for name in required:
        if name not in body or body[name] is None:
            raise Invalid("missing_parameter", f"Missing required field: {name}.", name)
    return body


def check_request_text() -> None:
    """Before every /v1 request: no path or query string holds NUL, another control
    character or a lone surrogate. A path that does is no route (404); a query, 400."""
    if not request.path.startswith("/v1/"):
        return
    if _CONTROL.search(request.path):
        raise no_route()
    for name, value in request.args.items(multi=True):
        for text in (name, value):
            if _CONTROL.search(text):
                raise Invalid("invalid_text", f"The query parameter {name!r} holds a control character.",
                              name if name.isprintable() else None)


def amount(body: dict, name: str = "amount", *, optional: bool = False) -> int | None:
    """A positive integer of minor units, at most MAX_REQUEST_AMOUNT."""
    value = body.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("invalid_amount", f"{name} must be an integer of minor units.", name)
    if value <= 0:
        raise Invalid("invalid_amount", f"{name} must be positive.", name)
    if value > MAX_REQUEST_AMOUNT:
        raise Invalid("invalid_amount", f"{name} must be at most {MAX_REQUEST_AMOUNT}.", name)
    return value


def currency(body: dict, name: str = "currency") -> str:
    """An ISO 4217 alphabetic code the gateway keeps accounts in."""
    value = body.get(name)
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise Invalid("invalid_currency", f"{name} must be an ISO 4217 code such as \"CNY\".", name)
    if not iso4217.is_known(value):
        raise Invalid("unknown_currency", f"Unknown or unsupported currency: {value}.", name)
    return value


def text(body: dict, name: str, *, optional: bool = False, max_length: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Invalid("invalid_parameter", f"{name} must be a non-empty string.", name)
    if len(value) > max_length:
        raise Invalid("invalid_parameter", f"{name} must be at most {max_length} characters.", name)
    return value


def qr_text(body: dict, name: str, *, max_length: int, optional: bool = False) -> str | None:
    """Text an EMV QR code field can carry (printable ASCII), 1 to max_length characters."""
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or not _QR_TEXT.fullmatch(value):
        raise Invalid("invalid_parameter", f"{name} must be 1 to {max_length} printable ASCII characters "
                                           "(letters, digits, spaces, punctuation): it is printed in QR codes, "
                                           "whose field cannot carry other scripts or control characters.", name)
    return value


def object_id(body: dict, name: str) -> str:
    """A resource id such as "wal_..." (its existence is the service's to check)."""
    value = body.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Invalid("invalid_parameter", f"{name} must be an id string.", name)
    return value


def integer(body: dict, name: str, *, low: int, high: int, optional: bool = False) -> int | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid("invalid_parameter", f"{name} must be an integer from {low} to {high}.", name)
    return value


PAGE_PARAMETERS = ("limit", "after")


def args(*allowed: str) -> dict:
    """The query parameters among `allowed` that are given; any other parameter is refused."""
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise Invalid("unknown_parameter", f"Unknown query parameter(s): {', '.join(unknown)}.", unknown[0])
    return {name: request.args[name] for name in allowed if name in request.args}


def page_args(default_limit: int = 20, max_limit: int = 100) -> tuple[int, str | None]:
    """?limit= and ?after= of a cursor-paginated list that takes no other parameter."""
    args(*PAGE_PARAMETERS)
    return _limit_and_after(default_limit, max_limit)


def query(*allowed: str) -> dict:
    """The query of a cursor-paginated list: the parameters among `allowed` that are given
    (and not empty), plus limit (an int) and after; any other parameter is refused."""
    given = args(*allowed, *PAGE_PARAMETERS)
    limit, after = _limit_and_after(20, 100)
    return {**{name: given[name] for name in allowed if given.get(name)}, "limit": limit, "after": after}


def _limit_and_after(default_limit: int, max_limit: int) -> tuple[int, str | None]:
    raw = request.args.get("limit", str(default_limit))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= max_limit):
        raise Invalid("invalid_parameter", f"limit must be an integer from 1 to {max_limit}.", "limit")
    after = request.args.get("after") or None
    if after is not None and len(after) > 200:
        raise Invalid("invalid_parameter", "after is not a cursor this API gave.", "after")
    return int(raw), after
