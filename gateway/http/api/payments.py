"""/v1/payments: a wallet pays a merchant; payer, payee and operator read it."""
from flask import Blueprint

from gateway.core import payments
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("payments", __name__)


@bp.post("/v1/payments")
@requires("wallet")
@idempotent
def create(tx):
    body = api.json_body(required=("merchant_id", "amount", "currency"), optional=("description",))
    payment = payments.create_payment(
        tx, current_caller(), merchant_id=api.object_id(body, "merchant_id"),
        amount=api.amount(body), currency=api.currency(body),
        description=api.text(body, "description", optional=True), now=runtime().now())
    return 201, payment


@bp.get("/v1/payments")
@requires("operator", "wallet", "merchant")
def list_():
    limit, after = api.page_args()
    with runtime().store.read() as tx:
        return payments.list_payments(tx, current_caller(), limit=limit, after=after)


@bp.get("/v1/payments/<payment_id>")
@requires("operator", "wallet", "merchant")
def get(payment_id):
    with runtime().store.read() as tx:
        return payments.get_payment(tx, current_caller(), payment_id)
