"""/v1/terminals: the operator registers a merchant's terminal and hands over its secret once."""
from flask import Blueprint

from gateway.core import terminals
from gateway.http import api
from gateway.http.auth import current_caller, requires, terminal_secret
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

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



# Suspend: the terminal's signed requests are refused from the next one until it is resumed.
# Revoke: for good. The operator or the terminal's merchant may do each.

@bp.post("/v1/terminals/<terminal_id>/suspend")
@requires("operator", "merchant")
@idempotent
def suspend(tx, terminal_id):
    return _change(tx, terminal_id, "suspend")


@bp.post("/v1/terminals/<terminal_id>/resume")
@requires("operator", "merchant")
@idempotent
def resume(tx, terminal_id):
    return _change(tx, terminal_id, "resume")


@bp.post("/v1/terminals/<terminal_id>/revoke")
@requires("operator", "merchant")
@idempotent
def revoke(tx, terminal_id):
    return _change(tx, terminal_id, "revoke")


def _change(tx, terminal_id: str, action: str):
    api.json_body()
    return 200, terminals.change_status(tx, current_caller(), terminal_id, action, now=runtime().now())
