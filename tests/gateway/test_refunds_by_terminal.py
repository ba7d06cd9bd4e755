"""Refunds by a merchant's own terminal (a till): it refunds its merchant's payments,
never another merchant's, and a wallet refunds nothing."""
from __future__ import annotations

import pytest

from tests.gateway.fixtures import books, error, ok


@pytest.fixture
def paid(world):
    """Wallet a paid merchant x 300, wallet b paid merchant y 300."""
    world.top_up("a", 1000)
    world.top_up("b", 1000)
    return world, world.pay("a", "x", 300)["id"], world.pay("b", "y", 300)["id"]


def test_a_till_refunds_its_merchants_payment_like_the_merchant(paid, store):
    world, pay_ax, _ = paid
    _, till_x = world.terminal("x")
    refund = ok(till_x.post("/v1/refunds", {"payment_id": pay_ax, "amount": 120, "reason": "returned"}), 201)
    assert (refund["payment_id"], refund["amount"], refund["currency"]) == (pay_ax, 120, "CNY")
    assert world.available("a") == 820 and world.merchant_available("x") == 180
    # without an amount the rest goes back; the merchant sees the till's refunds on its payment
    ok(till_x.post("/v1/refunds", {"payment_id": pay_ax}), 201)
    _, merchant_x = world.merchant("x")
    payment = ok(merchant_x.get(f"/v1/payments/{pay_ax}"))
    assert (payment["status"], payment["amount_refunded"]) == ("refunded", 300)
    assert till_x.post("/v1/refunds", {"payment_id": pay_ax, "amount": 1}).status_code == 400  # nothing left
    assert world.available("a") == 1000 and books(store)[0]


def test_a_till_retrying_with_its_key_refunds_once(paid):
    world, pay_ax, _ = paid
    _, till_x = world.terminal("x")
    first = till_x.post("/v1/refunds", {"payment_id": pay_ax, "amount": 50}, key="refund-1")
    again = till_x.post("/v1/refunds", {"payment_id": pay_ax, "amount": 50}, key="refund-1")
    assert ok(first, 201) == ok(again, 201)
    assert world.available("a") == 750


def test_a_till_of_another_merchant_gets_the_404_of_a_missing_payment(paid, nothing_moved):
    world, pay_ax, pay_by = paid
    check = nothing_moved()
    _, till_y = world.terminal("y")
    stranger = error(till_y.post("/v1/refunds", {"payment_id": pay_ax, "amount": 1}), 404, "not_found")
    missing = error(till_y.post("/v1/refunds", {"payment_id": "pay_" + "0" * 24, "amount": 1}), 404, "not_found")
    assert stranger == missing
    _, till_x = world.terminal("x")
    error(till_x.post("/v1/refunds", {"payment_id": pay_by}), 404, "not_found")
    check()


def test_a_wallet_cannot_refund_even_its_own_payment(paid, nothing_moved):
    world, pay_ax, _ = paid
    check = nothing_moved()
    _, wallet_a = world.wallet("a")
    error(wallet_a.post("/v1/refunds", {"payment_id": pay_ax, "amount": 1}), 403, "permission_error")
    check()
