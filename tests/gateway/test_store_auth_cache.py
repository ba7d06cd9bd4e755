"""Bearer keys are cached per process (gateway.http.auth): what may change is still checked in the write."""
from __future__ import annotations

from gateway.http import auth
from tests.gateway.fixtures import error, ok


def test_a_locked_wallet_cannot_pay_though_its_key_is_cached(app, world, store):
    world.top_up("a", 1000)
    world.pay("a", "x", 100)  # the wallet's key is now cached
    wallet_id, wallet = world.wallet("a")
    rt = app.extensions["tapstack"]
    assert any(caller.id == wallet_id for caller, _ in rt.callers.values())
    with store.transaction() as tx:
        tx.execute("UPDATE wallets SET status = 'locked' WHERE id = :id", {"id": wallet_id})
    merchant_id, _ = world.merchant("x")
    response = wallet.post("/v1/payments", {"merchant_id": merchant_id, "amount": 100, "currency": "CNY"})
    error(response, 409, "conflict", "wallet_locked")
    assert world.available("a") == 900


def test_unknown_keys_are_not_cached_and_forget_drops_a_caller(app, world):
    rt = app.extensions["tapstack"]
    _, stranger = world.wallet("a")
    error(stranger.as_("wk_" + "x" * 43).get("/v1/payments"), 401, "authentication_error")
    assert rt.callers == {}
    wallet_id, wallet = world.wallet("a")
    ok(wallet.get("/v1/payments"))
    assert len(rt.callers) == 1
    auth.forget_caller(rt, wallet_id)
    assert rt.callers == {}
