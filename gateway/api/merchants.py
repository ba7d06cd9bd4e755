"""/v1/merchants: the operator signs merchants up; a merchant reads its own."""
from flask import Blueprint

from gateway import api
from gateway.app import runtime
from gateway.auth import current_caller, requires
from gateway.idempotency import idempotent
from gateway.api.wallets import owner_balance, owner_statement
from gateway.services import merchants

bp = Blueprint("merchants", __name__)


@bp.post("/v1/merchants")
@requires("operator")
@idempotent
def create(tx):
    """Answers once with the merchant's API key ("sk_..."); only its SHA-256 is kept."""
    body = api.json_body(required=("name",), optional=("currency",))
    currency = api.currency(body) if "currency" in body else runtime().config.currency
    merchant, api_key = merchants.create_merchant(
        tx, name=api.qr_text(body, "name", max_length=200), currency=currency, now=runtime().now())
    return 201, {**merchant, "api_key": api_key}


@bp.get("/v1/merchants/<merchant_id>")
@requires("operator", "merchant")
def get(merchant_id):
    with runtime().store.read() as tx:
        return merchants.merchant_view(merchants.merchant_row(tx, current_caller(), merchant_id))


@bp.get("/v1/merchants/<merchant_id>/balance")
@requires("operator", "merchant")
def balance(merchant_id):
    return owner_balance(merchants.merchant_row, merchant_id)


@bp.get("/v1/merchants/<merchant_id>/statement")
@requires("operator", "merchant")
def statement(merchant_id):
    return owner_statement(merchants.merchant_row, merchant_id)
