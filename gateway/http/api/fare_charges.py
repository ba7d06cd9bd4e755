"""Account-based fare charges: the day's charging run, debts, a wallet's charges, token revenue.

    POST /v1/fare-charges/runs                  operator: {"day": "YYYY-MM-DD"} (default: today, local)
    GET  /v1/fare-charges?day=                  operator, merchant: a day's charges per route
    GET  /v1/fare-charges/revenue?day=          operator, merchant: per route and hour
    GET  /v1/wallets/<id>/fare-charges?status=  wallet, operator
    POST /v1/fare-charges/debts/<id>/settle     wallet, operator: pay one debt now

A run is safe to repeat: it charges a day only what it costs beyond earlier runs.
"""
import logging

from flask import Blueprint

from gateway.core import fare_charges
from gateway.core.errors import Conflict
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("fare_charges", __name__)
log = logging.getLogger("tapstack.gateway")


def published_rules(consequence: str = "trips cannot be priced", *, tx=None):
    """The fare rules the operator published, read in the request's transaction `tx` (the
    database's, else the data directory's file: see fare_charges.current_rules); without
    usable ones, a 409 no_fare_rules whose message ends with what the caller cannot do.
    Without `tx` only the data directory's file is read, as before rules moved into the
    database: pass the transaction."""
    data_dir = runtime().config.data_dir
    try:
        if tx is None:
            return fare_charges.read_rules(data_dir)
        return fare_charges.current_rules(tx, data_dir)
    except fare_charges.NoFareRules as e:
        # The cause (with the server's path) is for the log and the CLI, not the caller.
        log.warning("fare rules: %s", e)
        raise Conflict("no_fare_rules", f"No usable fare rules are published; {consequence}.") from None


def _day_arg(rules):
    raw = api.args("day").get("day")
    return fare_charges.parse_day(raw) if raw else rules.local_day(runtime().now())


@bp.post("/v1/fare-charges/runs")
@requires("operator")
@idempotent
def run(tx):
    body = api.json_body(optional=("day",))
    rules = published_rules(tx=tx)
    rt = runtime()
    day = fare_charges.parse_day(body["day"]) if body.get("day") is not None else rules.local_day(rt.now())
    return 200, fare_charges.run_day(tx, rules=rules, day=day, now=rt.now())


def _merchant_filter():
    caller = current_caller()
    return caller.id if caller.kind == "merchant" else None


@bp.get("/v1/fare-charges")
@requires("operator", "merchant")
def by_route():
    with runtime().store.read() as tx:
        day = _day_arg(published_rules(tx=tx))
        return fare_charges.day_by_route(tx, day, merchant_id=_merchant_filter())


@bp.get("/v1/fare-charges/revenue")
@requires("operator", "merchant")
def revenue():
    with runtime().store.read() as tx:
        day = _day_arg(published_rules(tx=tx))
        return fare_charges.revenue(tx, day, merchant_id=_merchant_filter())


@bp.get("/v1/wallets/<wallet_id>/fare-charges")
@requires("wallet", "operator")
def wallet_charges(wallet_id):
    status = api.args("status").get("status")
    with runtime().store.read() as tx:
        return fare_charges.wallet_charges(tx, current_caller(), wallet_id, status=status)


@bp.post("/v1/fare-charges/debts/<charge_id>/settle")
@requires("wallet", "operator")
@idempotent
def settle(tx, charge_id):
    api.json_body()
    return 200, fare_charges.settle_debt(tx, current_caller(), charge_id, now=runtime().now())
