"""Shop QR payments: a merchant's static code, /v1/checkouts (a till's one-sale code)
and /v1/paycode-payments (a till charging a customer's wallet-signed pay code)."""
from flask import Blueprint

from gateway.core import checkout
from gateway.http import api
from gateway.http.api.bills import qr_image
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("checkout", __name__)


# -- the merchant's static code ---------------------------------------------------------------

@bp.post("/v1/merchants/<merchant_id>/qr-profile")
@requires("operator", "merchant")
@idempotent
def set_profile(tx, merchant_id):
    """City (any script; city_latin for field 60 when it is not Latin), category code and
    store label that the merchant's codes show."""
    body = api.json_body(required=("city",), optional=("mcc", "store_label", "city_latin"))
    return 200, checkout.set_profile(tx, current_caller(), merchant_id, city=body["city"],
                                     mcc=body.get("mcc"), store_label=body.get("store_label"),
                                     now=runtime().now(), city_latin=body.get("city_latin"))


def _static(merchant_id: str) -> str:
    with runtime().store.read() as tx:
        return checkout.static_payload(tx, current_caller(), merchant_id)


@bp.get("/v1/merchants/<merchant_id>/qr")
@requires("operator", "merchant", "terminal")
def static_qr(merchant_id):
    return {"object": "qr_code", "merchant_id": merchant_id, "payload": _static(merchant_id)}


@bp.get("/v1/merchants/<merchant_id>/qr.png", defaults={"kind": "png"})
@bp.get("/v1/merchants/<merchant_id>/qr.svg", defaults={"kind": "svg"})
@requires("operator", "merchant", "terminal")
def static_qr_image(merchant_id, kind):
    return qr_image(_static(merchant_id), kind)


# -- checkouts ----------------------------------------------------------------------------------

@bp.post("/v1/checkouts")
@requires("merchant", "terminal")
@idempotent
def create(tx):
    body = api.json_body(required=("amount", "currency"), optional=("terminal_label", "expires_in"))
    return 201, checkout.create_checkout(
        tx, current_caller(), amount=api.amount(body), currency=api.currency(body),
        terminal_label=api.qr_text(body, "terminal_label", max_length=25, optional=True),
        expires_in=api.integer(body, "expires_in", low=10, high=checkout.MAX_CHECKOUT_SECONDS, optional=True),
        now=runtime().now())


@bp.get("/v1/checkouts/<checkout_id>")
@requires("operator", "merchant", "terminal", "wallet")
def get(checkout_id):
    rt = runtime()
    with rt.store.read() as tx:
        return checkout.get_checkout(tx, current_caller(), checkout_id, now=rt.now())


def _checkout_payload(checkout_id: str) -> str:
    rt = runtime()
    with rt.store.read() as tx:
        return checkout.checkout_payload(tx, current_caller(), checkout_id, now=rt.now())


@bp.get("/v1/checkouts/<checkout_id>/qr.png", defaults={"kind": "png"})
@bp.get("/v1/checkouts/<checkout_id>/qr.svg", defaults={"kind": "svg"})
@requires("operator", "merchant", "terminal")
def checkout_qr_image(checkout_id, kind):
    return qr_image(_checkout_payload(checkout_id), kind)


@bp.post("/v1/checkouts/<checkout_id>/payments")
@requires("wallet")
@idempotent
def pay(tx, checkout_id):
    """Pays the checkout's amount; answers the payment. Single use."""
    api.json_body()
    return 201, checkout.pay_checkout(tx, current_caller(), checkout_id, now=runtime().now())


@bp.post("/v1/checkouts/<checkout_id>/cancel")
@requires("merchant", "terminal")
@idempotent
def cancel(tx, checkout_id):
    api.json_body()
    return 200, checkout.cancel_checkout(tx, current_caller(), checkout_id, now=runtime().now())


# -- pay codes ----------------------------------------------------------------------------------

@bp.post("/v1/paycode-payments")
@requires("merchant", "terminal")
@idempotent
def pay_with_pay_code(tx):
    """Charge the wallet whose signed pay code (TS:...) the till scanned; each code pays once."""
    body = api.json_body(required=("pay_code", "amount", "currency"))
    return 201, checkout.pay_with_pay_code(tx, current_caller(), pay_code=api.text(body, "pay_code", max_length=1000),
                                           amount=api.amount(body), currency=api.currency(body),
                                           now=runtime().now())
