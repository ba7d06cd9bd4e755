"""/v1/issuer and the wallet's card: certificates, issuer keys, deny-list, remote lock."""
from flask import Blueprint

from gateway.core import issuer, wallets
from gateway.core.errors import Invalid
from gateway.http import api
from gateway.http.auth import current_caller, requires
from gateway.http.idempotency import idempotent
from gateway.http.runtime import runtime

bp = Blueprint("issuer", __name__)


def _seed() -> bytes:
    return runtime().config.secret("issuer_seed")


@bp.post("/v1/wallets/<wallet_id>/card")
@requires("wallet", "operator")
@idempotent
def certify(tx, wallet_id):
    """Certify the Ed25519 public key the wallet generated; only the wallet itself (or the operator)."""
    body = api.json_body(required=("public_key",))
    wallets.wallet_row(tx, current_caller(), wallet_id)  # another wallet's id answers 404
    card = issuer.certify(tx, wallet_id=wallet_id, public_key=issuer.parse_public_key(body["public_key"]),
                          seed=_seed(), now=runtime().now())
    return 201, card


@bp.get("/v1/wallets/<wallet_id>/cards")
@requires("wallet", "operator")
def cards(wallet_id):
    with runtime().store.read() as tx:
        wallets.wallet_row(tx, current_caller(), wallet_id)
        return {"object": "list", "data": issuer.wallet_cards(tx, wallet_id)}


@bp.get("/v1/issuer/keys")
def keys():
    """Public: the keys terminals verify certificates with (no credentials needed)."""
    rt = runtime()
    with rt.store.read() as tx:
        published = issuer.published_keys(tx)
    if not any(k["status"] == "active" for k in published["data"]):
        seed, now = _seed(), rt.now()

        def publish(tx):
            issuer.ensure_key(tx, seed, now=now)
            return issuer.published_keys(tx)
        published = rt.store.write(publish)
    return published


@bp.get("/v1/issuer/deny-list")
@requires("terminal", "operator")
def deny_list():
    raw = api.args("since").get("since")
    if raw is not None and not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise Invalid("invalid_parameter", "since must be a deny-list version (an integer >= 0).", "since")
    with runtime().store.read() as tx:
        return issuer.deny_list(tx, None if raw is None else int(raw))


@bp.post("/v1/issuer/deny-list")
@requires("operator")
@idempotent
def deny(tx):
    body = api.json_body(required=("entry", "kind", "reason"))
    version = issuer.deny(tx, entry=body["entry"], kind=body["kind"], reason=body["reason"],
                          now=runtime().now())
    return 201, {"object": "deny_list_entry", "entry": body["entry"], "kind": body["kind"],
                 "reason": body["reason"], "deny_list_version": version}


@bp.delete("/v1/issuer/deny-list/<entry>")
@requires("operator")
def allow(entry):
    rt = runtime()
    now = rt.now()
    version = rt.store.write(lambda tx: issuer.allow(tx, entry=entry, now=now))
    return {"object": "deny_list_entry", "entry": entry, "deleted": True, "deny_list_version": version}


@bp.post("/v1/wallets/<wallet_id>/lock")
@requires("operator")
@idempotent
def lock(tx, wallet_id):
    body = api.json_body(optional=("reason",))
    reason = api.text(body, "reason", optional=True, max_length=issuer.MAX_REASON) or "wallet locked"
    return 200, issuer.lock(tx, wallet_id=wallet_id, reason=reason, now=runtime().now())


@bp.post("/v1/wallets/<wallet_id>/unlock")
@requires("operator")
@idempotent
def unlock(tx, wallet_id):
    api.json_body()
    return 200, issuer.unlock(tx, wallet_id=wallet_id, now=runtime().now())
