"""/v1/terminals: the operator registers a merchant's terminal and hands over its secret once."""
from flask import Blueprint

from gateway import api
from gateway.app import runtime
from gateway.auth import current_caller, requires, terminal_secret
from gateway.idempotency import idempotent
from gateway.services import terminals

bp = Blueprint("terminals", __name__)


@bp.post("/v1/terminals")
@requires("operator")
@idempotent
def create(tx):
    body = api.json_body(required=("merchant_id",), optional=("name",))
    terminal = terminals.register_terminal(
        tx, merchant_id=api.object_id(body, "merchant_id"),
        name=api.text(body, "name", optional=True, max_length=200), now=runtime().now())
    # The secret is derived, not stored; a replay of this answer hands out the same one.
    secret = terminal_secret(runtime(), terminal["key_id"]).hex()
    return 201, {**terminal, "secret": secret}


@bp.get("/v1/terminals/<terminal_id>")
@requires("operator", "merchant", "terminal")
def get(terminal_id):
    with runtime().store.read() as tx:
        return terminals.get_terminal(tx, current_caller(), terminal_id)
