"""Card links: a wallet's link code, the terminal's tap that spends it, the wallet's linked cards.

    POST   /v1/wallets/<id>/card-links                 wallet (or operator): a link code
    POST   /v1/card-links/<code>/tap                   terminal: {"token": "pan_..." | "uid_..."}
    GET    /v1/wallets/<id>/linked-cards               wallet (or operator)
    DELETE /v1/wallets/<id>/linked-cards/<link_id>     wallet (or operator)
"""
from flask import Blueprint

from gateway.core import card_links
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("card_links", __name__)


@bp.post("/v1/wallets/<wallet_id>/card-links")
@requires("wallet", "operator")
@idempotent
def create_code(tx, wallet_id):
    api.json_body()
    return 201, card_links.create_code(tx, current_caller(), wallet_id, now=runtime().now())


@bp.post("/v1/card-links/<code>/tap")
@requires("terminal")
@idempotent
def tap(tx, code):
    body = api.json_body(required=("token",))
    return 201, card_links.link_by_code(tx, code=code, token=body["token"], terminal_id=current_caller().id,
                                        now=runtime().now())


@bp.get("/v1/wallets/<wallet_id>/linked-cards")
@requires("wallet", "operator")
def linked_cards(wallet_id):
    api.args()  # the whole list, always: no parameters
    with runtime().store.read() as tx:
        return card_links.wallet_links(tx, current_caller(), wallet_id)


@bp.delete("/v1/wallets/<wallet_id>/linked-cards/<link_id>")
@requires("wallet", "operator")
def unlink(wallet_id, link_id):
    caller = current_caller()
    return runtime().store.write(lambda tx: card_links.unlink(tx, caller, wallet_id, link_id))
