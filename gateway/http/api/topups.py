"""/v1/topups: money into a wallet from the simulated funding source."""
from flask import Blueprint

from gateway.core import payments
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("topups", __name__)


@bp.post("/v1/topups")
@requires("operator", "wallet")
@idempotent
def create(tx):
    """The operator tops up any wallet; a wallet tops up itself."""
    body = api.json_body(required=("wallet_id", "amount", "currency"))
    topup = payments.create_topup(
        tx, current_caller(), wallet_id=api.object_id(body, "wallet_id"), amount=api.amount(body),
        currency=api.currency(body), now=runtime().now())
    return 201, topup


@bp.get("/v1/topups/<topup_id>")
@requires("operator", "wallet")
def get(topup_id):
    with runtime().store.read() as tx:
        return payments.get_topup(tx, current_caller(), topup_id)
