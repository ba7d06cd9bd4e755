"""/v1/refunds: the paid merchant, or one of its terminals (a till), refunds all or part
of a payment, cumulatively."""
from flask import Blueprint

from gateway.core import payments
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("refunds", __name__)


@bp.post("/v1/refunds")
@requires("merchant", "terminal")
@idempotent
def create(tx):
    """Without an amount, refunds what is left of the payment."""
    body = api.json_body(required=("payment_id",), optional=("amount", "reason"))
    refund = payments.create_refund(
        tx, current_caller(), payment_id=api.object_id(body, "payment_id"),
        amount=api.amount(body, optional=True), reason=api.text(body, "reason", optional=True),
        now=runtime().now())
    return 201, refund


@bp.get("/v1/refunds/<refund_id>")
@requires("operator", "wallet", "merchant")
def get(refund_id):
    with runtime().store.read() as tx:
        return payments.get_refund(tx, current_caller(), refund_id)
