"""/v1/customers: the operator enrols customers; wallets hang off them."""
from flask import Blueprint

from gateway.core import wallets
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("customers", __name__)


@bp.post("/v1/customers")
@requires("operator")
@idempotent
def create(tx):
    body = api.json_body(optional=("name", "email", "external_ref"))
    customer = wallets.create_customer(
        tx, name=api.text(body, "name", optional=True), email=api.text(body, "email", optional=True),
        external_ref=api.text(body, "external_ref", optional=True), now=runtime().now())
    return 201, customer


@bp.get("/v1/customers/<customer_id>")
@requires("operator")
def get(customer_id):
    with runtime().store.read() as tx:
        return wallets.get_customer(tx, current_caller(), customer_id)
