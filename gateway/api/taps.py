"""/v1/taps: validators upload journalled taps; ridership; purse loads; the validator's fare rules.

POST /v1/taps takes {"taps": [...]} of up to 1000 rows (the body may be up to 1 MiB,
beyond the API's usual 64 KiB) and answers per row. The tap ids are what makes an
upload safe to repeat: a row already stored answers "duplicate". The Idempotency-Key
(the uploader sends a hash of the batch's ids) replays the whole answer to an
identical retry without re-reading it. A row's "direction" is "on" (the default) or
"off" (an exit validator's tap-off; a purse tap-off is stored and not cleared).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from flask import Blueprint, request

from gateway import api
from gateway.app import runtime
from gateway.auth import current_caller, requires
from gateway.errors import invalid, not_found
from gateway.idempotency import idempotent
from gateway.services import clearing, fare_charges, taps, unix, wallets

bp = Blueprint("taps", __name__)
log = logging.getLogger("tapstack.gateway")

MAX_TAPS_BODY = 1024 * 1024


@bp.before_request
def _larger_batches():
    if request.endpoint == "taps.upload":
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
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None  # the write path answers the error
    rt = runtime()
    with rt.store.read() as tx:
        return taps.verify_ahead(tx, terminal_id=current_caller().id, rows=body.get("taps"), now=rt.now())


@idempotent
def _store_upload(tx, ahead: taps.Verified | None):
    body = api.json_body(required=("taps",))
    rows = body["taps"]
    if not isinstance(rows, list) or not rows:
        raise invalid("invalid_parameter", "taps must be a non-empty list of taps.", "taps")
    if len(rows) > taps.MAX_BATCH:
        raise invalid("batch_too_large", f"At most {taps.MAX_BATCH} taps per request.", "taps")
    caller = current_caller()
    return 200, taps.ingest(tx, terminal_id=caller.id, merchant_id=caller.merchant_id, rows=rows,
                            now=runtime().now(), routes=_known_routes(tx), ahead=ahead)


def _time_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 12:
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid("invalid_parameter", f"{name} is unix seconds or an ISO 8601 UTC time.", name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return unix(moment)


@bp.get("/v1/taps/ridership")
@requires("operator", "merchant")
def ridership():
    unknown = sorted(set(request.args) - {"from", "to", "route"})
    if unknown:
        raise invalid("unknown_parameter", f"Unknown query parameter(s): {', '.join(unknown)}.", unknown[0])
    now = unix(runtime().now())
    until = _time_arg("to", now + 1)
    since = _time_arg("from", until - 24 * 3600)
    if since >= until:
        raise invalid("invalid_parameter", "from must be before to.", "from")
    caller = current_caller()
    with runtime().store.read() as tx:
        return taps.ridership(tx, since=since, until=until, route=request.args.get("route"),
                              merchant_id=caller.id if caller.kind == "merchant" else None)


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
        raise invalid("invalid_parameter", "card_id is 16 lower-case hex digits.", "card_id")
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
