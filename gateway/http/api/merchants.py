"""/v1/merchants: the operator signs merchants up; a merchant reads its own."""
from flask import Blueprint

from gateway.core import merchants
from gateway.http import api
from gateway.http.api.wallets import owner_balance, owner_statement
from gateway.http.auth import current_caller, forget_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("merchants", __name__)


@bp.post("/v1/merchants")
@requires("operator")
@idempotent
def create(tx):
    """Answers once with the merchant's API key ("sk_..."); only its SHA-256 is kept."""
    body = api.json_body(required=("name",), optional=("currency", "name_latin", "language"))
    currency = api.currency(body) if "currency" in body else runtime().config.currency
    merchant, api_key = merchants.create_merchant(
        tx, name=api.text(body, "name", max_length=200), currency=currency, now=runtime().now(),
        name_latin=body.get("name_latin"), language=body.get("language"))
    return 201, {**merchant, "secret": api_key, "api_key": api_key}  # api_key: deprecated alias of secret


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


@bp.get("/v1/merchants/<merchant_id>/api_keys")
@requires("operator", "merchant")
def api_keys(merchant_id):
    """The merchant's keys with status (active, expiring, expired, revoked) and expiry; never the keys."""
    rt = runtime()
    with rt.store.read() as tx:
        return merchants.list_api_keys(tx, current_caller(), merchant_id, rt.now())


@bp.post("/v1/merchants/<merchant_id>/api_keys/roll")
@requires("operator", "merchant")
@idempotent
def roll_api_key(tx, merchant_id):
    """{"expires_in": seconds}: a new key, answered once as `secret`; the keys in use keep working
    for expires_in seconds (24 h unless given, 0 to 7 days; 0 stops them at once)."""
    body = api.json_body(optional=("expires_in",))
    expires_in = api.integer(body, "expires_in", low=0, high=merchants.MAX_ROLL_SECONDS, optional=True)
    key = merchants.roll_api_key(tx, current_caller(), merchant_id, now=runtime().now(),
                                 expires_in=merchants.DEFAULT_ROLL_SECONDS if expires_in is None else expires_in)
    if expires_in == 0:
        forget_caller(runtime(), merchant_id)
    return 201, key


@bp.post("/v1/merchants/<merchant_id>/api_keys/<key_id>/revoke")
@requires("operator", "merchant")
@idempotent
def revoke_api_key(tx, merchant_id, key_id):
    api.json_body()
    key = merchants.revoke_api_key(tx, current_caller(), merchant_id, key_id, now=runtime().now())
    forget_caller(runtime(), merchant_id)
    return 200, key
