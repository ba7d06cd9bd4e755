"""/v1/pos/authorizations: a till holds money from a pay code, then captures or voids it."""
from flask import Blueprint

from gateway.core import payments
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("pos", __name__)


@bp.post("/v1/pos/authorizations")
@requires("terminal", "merchant")
@idempotent
def authorize(tx):
    body = api.json_body(required=("pay_code", "amount", "currency"), optional=("timeout_seconds",))
    authorization = payments.authorize(
        tx, current_caller(), pay_code=api.text(body, "pay_code", max_length=100),
        amount=api.amount(body), currency=api.currency(body),
        timeout_seconds=api.integer(body, "timeout_seconds", low=1,
                                    high=payments.MAX_AUTHORIZATION_SECONDS, optional=True),
        now=runtime().now())
    return 201, authorization


@bp.get("/v1/pos/authorizations/<auth_id>")
@requires("operator", "merchant", "terminal", "wallet")
def get(auth_id):
    rt = runtime()
    with rt.store.read() as tx:
        return payments.get_authorization(tx, current_caller(), auth_id, now=rt.now())


@bp.post("/v1/pos/authorizations/<auth_id>/capture")
@requires("terminal", "merchant")
@idempotent
def capture(tx, auth_id):
    """Without an amount, captures the whole hold."""
    body = api.json_body(optional=("amount",))
    return 200, payments.capture(tx, current_caller(), auth_id,
                                 amount=api.amount(body, optional=True), now=runtime().now())


@bp.post("/v1/pos/authorizations/<auth_id>/void")
@requires("terminal", "merchant")
@idempotent
def void(tx, auth_id):
    api.json_body()
    return 200, payments.void(tx, current_caller(), auth_id, now=runtime().now())
