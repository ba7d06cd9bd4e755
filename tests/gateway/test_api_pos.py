"""POS: a till authorises from a pay code (a pending transfer with a timeout), then
captures all or part of it, or voids it; a lapsed hold can be neither."""
from __future__ import annotations

import pytest

from tests.gateway.fixtures import books, error, ok


@pytest.fixture
def funded(world):
    world.top_up("a", 1000)
    return world


def authorize(world, till, amount=600, **extra):
    body = {"pay_code": world.pay_code("a"), "amount": amount, "currency": "CNY", **extra}
    return ok(till.post("/v1/pos/authorizations", body), 201)


def test_authorise_holds_then_partial_capture_posts_part_and_releases_the_rest(funded, store):
    terminal_id, till = funded.terminal("x")
    merchant_id, _ = funded.merchant("x")
    auth = authorize(funded, till, 600)
    assert auth["id"].startswith("auth_") and auth["status"] == "pending"
    assert (auth["terminal_id"], auth["merchant_id"]) == (terminal_id, merchant_id)
    assert auth["expires_at"] == "2026-11-27T09:15:00Z"
    assert funded.available("a") == 400 and funded.merchant_available("x") == 0
    captured = ok(till.post(f"/v1/pos/authorizations/{auth['id']}/capture", {"amount": 450}))
    assert (captured["status"], captured["amount_captured"]) == ("captured", 450)
    assert funded.available("a") == 550 and funded.merchant_available("x") == 450
    _, merchant = funded.merchant("x")
    payment = ok(merchant.get(f"/v1/payments/{captured['payment_id']}"))
    assert (payment["amount"], payment["authorization_id"]) == (450, auth["id"])
    # a captured POS payment refunds like any other
    ok(merchant.post("/v1/refunds", {"payment_id": payment["id"]}), 201)
    assert funded.available("a") == 1000
    assert books(store)[0]


def test_capture_without_amount_takes_the_whole_hold(funded):
    _, till = funded.terminal("x")
    auth = authorize(funded, till, 300)
    captured = ok(till.post(f"/v1/pos/authorizations/{auth['id']}/capture"))
    assert captured["amount_captured"] == 300
    assert funded.available("a") == 700 and funded.merchant_available("x") == 300


def test_void_releases_the_hold_and_blocks_capture(funded):
    _, till = funded.terminal("x")
    auth = authorize(funded, till, 300)
    assert ok(till.post(f"/v1/pos/authorizations/{auth['id']}/void"))["status"] == "voided"
    assert funded.available("a") == 1000
    error(till.post(f"/v1/pos/authorizations/{auth['id']}/capture"), 409, "conflict", "authorization_voided")


def test_merchant_itself_may_authorise_and_capture(funded):
    _, merchant = funded.merchant("x")
    auth = authorize(funded, merchant, 100)
    assert auth["terminal_id"] is None
    ok(merchant.post(f"/v1/pos/authorizations/{auth['id']}/capture"))
    assert funded.merchant_available("x") == 100


def test_expired_authorisation_cannot_be_captured_and_its_hold_lapses(funded, clock):
    _, till = funded.terminal("x")
    auth = authorize(funded, till, 900, timeout_seconds=30)
    clock.advance(29)
    assert ok(till.get(f"/v1/pos/authorizations/{auth['id']}"))["status"] == "pending"
    clock.advance(1)
    assert ok(till.get(f"/v1/pos/authorizations/{auth['id']}"))["status"] == "expired"
    error(till.post(f"/v1/pos/authorizations/{auth['id']}/capture"), 409, "conflict", "authorization_expired")
    error(till.post(f"/v1/pos/authorizations/{auth['id']}/void"), 409, "conflict", "authorization_expired")
    assert funded.merchant_available("x") == 0
    # the lapsed hold is released, not shown as held, and does not block spending
    balance = ok(funded.operator.get(f"/v1/wallets/{funded.wallet('a')[0]}/balance"))
    assert (balance["available"], balance["pending_debits"]) == (1000, 0)
    funded.pay("a", "y", 1000)
    assert funded.available("a") == 0


def test_a_lapsed_hold_never_blocks_a_payment(funded, clock):
    _, till = funded.terminal("x")
    authorize(funded, till, 900, timeout_seconds=30)
    clock.advance(30)
    funded.pay("a", "y", 1000)  # no balance read in between: the payment releases the hold
    assert funded.available("a") == 0


def test_capture_above_the_hold_is_refused(funded, nothing_moved):
    _, till = funded.terminal("x")
    auth = authorize(funded, till, 300)
    check = nothing_moved()
    error(till.post(f"/v1/pos/authorizations/{auth['id']}/capture", {"amount": 301}),
          400, "invalid_request_error", "amount_too_large")
    check()


def test_pay_code_is_single_use_and_short_lived(funded, clock, nothing_moved):
    _, till = funded.terminal("x")
    code = funded.pay_code("a")
    ok(till.post("/v1/pos/authorizations", {"pay_code": code, "amount": 10, "currency": "CNY"}), 201)
    check = nothing_moved()
    e = error(till.post("/v1/pos/authorizations", {"pay_code": code, "amount": 10, "currency": "CNY"}),
              404, "not_found")
    assert e["param"] == "pay_code"
    late = funded.pay_code("a")
    clock.advance(61)
    error(till.post("/v1/pos/authorizations", {"pay_code": late, "amount": 10, "currency": "CNY"}),
          404, "not_found")
    check()


def test_authorising_more_than_the_wallet_holds_is_402(funded, nothing_moved):
    _, till = funded.terminal("x")
    check = nothing_moved()
    body = {"pay_code": funded.pay_code("a"), "amount": 1001, "currency": "CNY"}
    e = error(till.post("/v1/pos/authorizations", body), 402, "payment_error", "insufficient_funds")
    assert e["param"] == "amount"
    check()
