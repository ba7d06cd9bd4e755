"""Key lifecycle, on each backend: merchant API keys rolled with an overlap and revoked at
once, wallet credentials revoked and reissued, terminals suspended, resumed and revoked,
and one name (`secret`) for every newly issued secret (docs/security.md)."""
from __future__ import annotations

from gateway.http.auth import CALLER_CACHE_SECONDS
from tests.gateway.fixtures import error, ok
from tests.gateway.test_taps import token_row


def forget_cached_keys(app):
    """What CALLER_CACHE_SECONDS of real time does to each process's cache of bearer keys: the
    tests' clock moves hours while real time does not."""
    app.extensions["tapstack"].callers.clear()


def test_a_rolled_merchant_key_works_until_its_stated_expiry_then_stops(world, clock, app):
    merchant_id, old = world.merchant("x")
    clock.advance(60)
    rolled = ok(old.post(f"/v1/merchants/{merchant_id}/api_keys/roll", {"expires_in": 3600}), 201)
    new = old.as_(rolled["secret"])
    assert rolled["secret"].startswith("sk_") and rolled["status"] == "active" and rolled["last4"] == rolled["secret"][-4:]
    keys = ok(new.get(f"/v1/merchants/{merchant_id}/api_keys"))["data"]
    assert [(k["status"], k["expires_at"]) for k in keys] == [("active", None), ("expiring", "2026-11-27T10:01:00Z")]
    assert "secret" not in str(keys) and rolled["secret"] not in str(keys)
    ok(old.get(f"/v1/merchants/{merchant_id}"))                     # both work during the overlap
    ok(new.get(f"/v1/merchants/{merchant_id}"))
    clock.advance(3601)
    forget_cached_keys(app)
    error(old.get(f"/v1/merchants/{merchant_id}"), 401, "authentication_error")
    ok(new.get(f"/v1/merchants/{merchant_id}"))
    assert [k["status"] for k in ok(new.get(f"/v1/merchants/{merchant_id}/api_keys"))["data"]] == ["active", "expired"]


def test_a_revoked_merchant_key_stops_at_once_and_roll_0_replaces_at_once(world, operator):
    merchant_id, shop = world.merchant("x")
    other_id, other = world.merchant("y")
    [key] = ok(shop.get(f"/v1/merchants/{merchant_id}/api_keys"))["data"]
    error(other.post(f"/v1/merchants/{merchant_id}/api_keys/{key['id']}/revoke"), 404, "not_found")
    error(other.post(f"/v1/merchants/{other_id}/api_keys/{key['id']}/revoke"), 404, "not_found")
    rolled = ok(operator.post(f"/v1/merchants/{merchant_id}/api_keys/roll", {"expires_in": 0}), 201)
    error(shop.get(f"/v1/merchants/{merchant_id}"), 401, "authentication_error")  # same process: at once
    new = shop.as_(rolled["secret"])
    revoked = ok(new.post(f"/v1/merchants/{merchant_id}/api_keys/{rolled['id']}/revoke"))
    assert revoked["status"] == "revoked" and revoked["revoked_at"] == "2026-11-27T09:00:00Z"
    error(new.get(f"/v1/merchants/{merchant_id}"), 401, "authentication_error")
    error(operator.post(f"/v1/merchants/{merchant_id}/api_keys/roll", {"expires_in": 7 * 86400 + 1}), 400,
          "invalid_request_error", "invalid_parameter")
    again = ok(operator.post(f"/v1/merchants/{merchant_id}/api_keys/roll"), 201)  # the operator rescues it
    ok(shop.as_(again["secret"]).get(f"/v1/merchants/{merchant_id}"))


def test_new_secrets_are_named_secret_with_the_old_names_kept_as_aliases(operator, world):
    customer = ok(operator.post("/v1/customers", {"name": "Rider c"}), 201)
    wallet = ok(operator.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"}), 201)
    merchant = ok(operator.post("/v1/merchants", {"name": "Shop z"}), 201)
    biller = ok(operator.post("/v1/billers", {"name": "Water", "city": "Hangzhou"}), 201)
    terminal = ok(operator.post("/v1/terminals", {"merchant_id": merchant["id"]}), 201)
    assert wallet["secret"] == wallet["credential"] and wallet["secret"].startswith("wk_")
    assert merchant["secret"] == merchant["api_key"] and biller["secret"] == biller["api_key"]
    assert len(bytes.fromhex(terminal["secret"])) == 32
    endpoint = ok(operator.as_(merchant["secret"]).post("/v1/webhook_endpoints", {"url": "https://hooks.example/"}), 201)
    assert endpoint["secret"].startswith("whsec_")


def test_a_wallet_credential_is_revoked_and_reissued(world, operator):
    wallet_id, wallet = world.wallet("a")
    other_id, other = world.wallet("b")
    error(other.post(f"/v1/wallets/{wallet_id}/credential/reissue"), 404, "not_found")
    error(wallet.post(f"/v1/wallets/{wallet_id}/credential/revoke"), 403, "permission_error")
    revoked = ok(operator.post(f"/v1/wallets/{wallet_id}/credential/revoke"))
    assert revoked["credential_status"] == "revoked"
    error(wallet.get(f"/v1/wallets/{wallet_id}"), 401, "authentication_error")
    reissued = ok(operator.post(f"/v1/wallets/{wallet_id}/credential/reissue"), 201)
    assert reissued["credential_status"] == "active" and reissued["secret"] == reissued["credential"]
    error(wallet.get(f"/v1/wallets/{wallet_id}"), 401, "authentication_error")  # the old one stays dead
    fresh = wallet.as_(reissued["secret"])
    again = ok(fresh.post(f"/v1/wallets/{wallet_id}/credential/reissue"), 201)  # a wallet rotates its own
    error(fresh.get(f"/v1/wallets/{wallet_id}"), 401, "authentication_error")
    assert ok(wallet.as_(again["secret"]).get(f"/v1/wallets/{wallet_id}"))["id"] == wallet_id


def test_a_suspended_terminal_is_refused_at_once_and_its_taps_wait_for_resume(world, operator):
    """Taps a validator takes while suspended (or before, not yet uploaded) are refused with
    the upload, whatever time they say: a suspended terminal may be in a thief's hands, and
    the tap times are the terminal's own claim. They stay in its journal and count once
    when it is resumed. A revoked terminal never uploads again."""
    terminal_id, till = world.terminal("x")
    merchant_id, shop = world.merchant("x")
    _, other_shop = world.merchant("y")
    error(other_shop.post(f"/v1/terminals/{terminal_id}/suspend"), 404, "not_found")
    error(till.post(f"/v1/terminals/{terminal_id}/suspend"), 403, "permission_error")
    suspended = ok(shop.post(f"/v1/terminals/{terminal_id}/suspend"))
    assert suspended["status"] == "suspended" and suspended["suspended_at"] == "2026-11-27T09:00:00Z"
    rows = [token_row(n) for n in range(1, 4)]                   # taken before the suspension
    error(till.post("/v1/taps", {"taps": rows}), 403, "permission_error", "terminal_suspended")
    error(till.get(f"/v1/terminals/{terminal_id}"), 403, "permission_error", "terminal_suspended")
    error(shop.post(f"/v1/terminals/{terminal_id}/suspend"), 409, "conflict", "terminal_status")
    assert ok(operator.post(f"/v1/terminals/{terminal_id}/resume"))["status"] == "active"
    assert ok(till.post("/v1/taps", {"taps": rows}))["accepted"] == 3
    revoked = ok(operator.post(f"/v1/terminals/{terminal_id}/revoke"))
    assert revoked["status"] == "revoked"
    error(till.post("/v1/taps", {"taps": [token_row(4)]}), 403, "permission_error", "terminal_revoked")
    error(shop.post(f"/v1/terminals/{terminal_id}/resume"), 409, "conflict", "terminal_status")
    assert ok(shop.get(f"/v1/terminals/{terminal_id}"))["status"] == "revoked"


def test_the_cache_never_outlives_its_bound():
    assert CALLER_CACHE_SECONDS <= 5  # docs/security.md promises revocation everywhere within 5 s
