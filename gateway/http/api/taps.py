"""/v1/taps: validators upload journalled taps; ridership; purse loads; the validator's fare rules.

POST /v1/taps takes {"taps": [...]} of up to 1000 rows (the body may be up to 1 MiB,
beyond the API's usual 64 KiB) and answers per row. The tap ids are what makes an
upload safe to repeat: a row already stored answers "duplicate". The Idempotency-Key
(the uploader sends a hash of the batch's ids) replays the whole answer to an
identical retry without re-reading it. A row's "direction" is "on" (the default) or
"off" (an exit validator's tap-off; a purse tap-off is stored and not cleared).

POST /v1/sales takes {"sales": [...]}: a shop till's sale records (protocol.uplink.SaleRecord),
answered per row as taps are and stored as sales (services/sales.py). A tap row on the
legacy till route ("pos", the sale id as the stop: how tills uploaded sales before) is
still taken by /v1/taps, and stored as the sale it is.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from flask import Blueprint, request

from gateway.core import clearing, fare_charges, sales, taps, unix, wallets
from gateway.core.errors import Invalid, not_found
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime
from protocol.uplink import records

bp = Blueprint("taps", __name__)
log = logging.getLogger("tapstack.gateway")

MAX_TAPS_BODY = api.MAX_UPLOAD_BYTES


@bp.before_request
def _larger_batches():
    if request.endpoint in ("taps.upload", "taps.upload_sales"):
        request.max_content_length = MAX_TAPS_BODY


def _known_routes(tx) -> frozenset[str] | None:
    """Routes of the published fare rules; None (no route check) when there are none or they
    do not parse: a bad rules file must not stop the buses' uploads."""
    try:
        return frozenset(r.id for r in fare_charges.current_rules(tx, runtime().config.data_dir).routes)
    except fare_charges.BrokenFareRules as e:
        log.warning("routes are not checked: %s", e)
    except fare_charges.NoFareRules:
        pass
    return None


@bp.post("/v1/taps")
@requires("terminal")
def upload():
    # Receipts are verified before the write (pure work; two workers verify two uploads
    # at once); the upload itself is stored and cleared in one write (store.write).
    return _store_upload(_verify_ahead())


def _verify_ahead() -> taps.Verified | None:
    body = api.parsed_body()  # a body that is not JSON is refused here, before any work
    if not isinstance(body, dict):
        return None  # the write path answers the error
    rt = runtime()
    with rt.store.read() as tx:
        rows = body.get("taps")
        if isinstance(rows, list):
            rows = [row for row in rows if not records.is_legacy_sale(row)]
        return taps.verify_ahead(tx, terminal_id=current_caller().id, rows=rows, now=rt.now())


@idempotent
def _store_upload(tx, ahead: taps.Verified | None):
    body = api.json_body(required=("taps",))
    rows = body["taps"]
    if not isinstance(rows, list) or not rows:
        raise Invalid("invalid_parameter", "taps must be a non-empty list of taps.", "taps")
    if len(rows) > taps.MAX_BATCH:
        raise Invalid("batch_too_large", f"At most {taps.MAX_BATCH} taps per request.", "taps")
    caller, now = current_caller(), runtime().now()
    legacy = [index for index, row in enumerate(rows) if records.is_legacy_sale(row)]
    if not legacy:  # a validator's upload: nothing but taps
        return 200, taps.ingest(tx, terminal_id=caller.id, merchant_id=caller.merchant_id, rows=rows,
                                now=now, routes=_known_routes(tx), ahead=ahead)
    tap_rows = [row for row in rows if not records.is_legacy_sale(row)]
    answered = dict(zip(legacy, sales.from_legacy_taps(tx, terminal_id=caller.id, merchant_id=caller.merchant_id,
                                                       rows=[rows[i] for i in legacy], now=now)))
    if tap_rows:
        tap_results = iter(taps.ingest(tx, terminal_id=caller.id, merchant_id=caller.merchant_id, rows=tap_rows,
                                       now=now, routes=_known_routes(tx), ahead=ahead)["results"])
        answered.update((index, next(tap_results)) for index in range(len(rows)) if index not in answered)
    return 200, taps.batch("tap_batch", len(rows), [answered[i] for i in range(len(rows))])


@bp.post("/v1/sales")
@requires("terminal")
def upload_sales():
    return _store_sales()


@idempotent
def _store_sales(tx):
    body = api.json_body(required=("sales",))
    rows = body["sales"]
    if not isinstance(rows, list) or not rows:
        raise Invalid("invalid_parameter", "sales must be a non-empty list of sale records.", "sales")
    if len(rows) > sales.MAX_BATCH:
        raise Invalid("batch_too_large", f"At most {sales.MAX_BATCH} sale records per request.", "sales")
    caller = current_caller()
    return 200, sales.ingest(tx, terminal_id=caller.id, merchant_id=caller.merchant_id, rows=rows,
                             now=runtime().now())


# Ridership times: from 1970 to the end of 9999, the times an ISO 8601 answer can show.
EARLIEST, LATEST = 0, unix(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc))


def _time_arg(given: dict, name: str, default: int) -> int:
    raw = given.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 12:
        seconds = int(raw)
    else:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            seconds = unix(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
        except ValueError:
            raise Invalid("invalid_parameter", f"{name} is unix seconds or an ISO 8601 UTC time.", name) from None
    if not EARLIEST <= seconds <= LATEST:
        raise Invalid("invalid_parameter", f"{name} must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.",
                      name)
    return seconds


def _window(given: dict) -> tuple[int, int]:
    """[from, to) of a report: to defaults to now, from to a day before to."""
    until = _time_arg(given, "to", min(unix(runtime().now()) + 1, LATEST))
    since = _time_arg(given, "from", max(until - 24 * 3600, EARLIEST))
    if since >= until:
        raise Invalid("invalid_parameter", "from must be before to.", "from")
    return since, until


@bp.get("/v1/taps/ridership")
@requires("operator", "merchant")
def ridership():
    given = api.args("from", "to", "route")
    since, until = _window(given)
    caller = current_caller()
    with runtime().store.read() as tx:
        return taps.ridership(tx, since=since, until=until, route=given.get("route"),
                              merchant_id=caller.id if caller.kind == "merchant" else None)


@bp.get("/v1/sales/revenue")
@requires("operator", "merchant")
def sale_revenue():
    since, until = _window(api.args("from", "to"))
    caller = current_caller()
    with runtime().store.read() as tx:
        return sales.revenue(tx, since=since, until=until, merchant_id=caller.id if caller.kind == "merchant" else None)


@bp.get("/v1/taps/fare-rules")
@requires("terminal", "operator")
def fare_rules():
    """The current fare rules, as published (the same from every gateway node)."""
    try:
        with runtime().store.read() as tx:
            document = fare_charges.current_rules_document(tx, runtime().config.data_dir)
    except fare_charges.BrokenFareRules as e:
        log.warning("fare rules: %s", e)
        document = None
    if document is None:
        raise not_found("fare rules (none published)")
    return document


@bp.post("/v1/wallets/<wallet_id>/purse-loads")
@requires("wallet", "operator")
@idempotent
def purse_load(tx, wallet_id):
    """Load the wallet's purse card: the wallet pays the card's float; the answer is the
    issuer's TOP-UP authorisation for the card's counter."""
    body = api.json_body(required=("card_id", "amount", "currency", "counter"))
    wallet = wallets.wallet_row(tx, current_caller(), wallet_id)
    card_id = body["card_id"]
    if not isinstance(card_id, str) or len(card_id) != 16 or any(c not in "0123456789abcdef" for c in card_id):
        raise Invalid("invalid_parameter", "card_id is 16 lower-case hex digits.", "card_id")
    counter = api.integer(body, "counter", low=0, high=0xFFFFFFFE)
    rt = runtime()
    load = clearing.authorise_load(tx, wallet=wallet, card_id=card_id, counter=counter,
                                   amount=api.amount(body), currency=api.currency(body),
                                   seed=rt.config.secret("issuer_seed"), now=rt.now())
    return 201, load


@bp.get("/v1/purse-cards/<card_id>")
@requires("operator")
def purse_card(card_id):
    """Where clearing stands for one card: cleared counter and balance, receipts held after a
    gap or stopped by a problem, its loads."""
    with runtime().store.read() as tx:
        return clearing.card_view(tx, card_id)
