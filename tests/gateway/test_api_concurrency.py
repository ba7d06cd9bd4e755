"""Many callers at once, on each backend: no overspend, no double refund, a pay code, an
authorisation, a checkout and a signed request's nonce each used once, every answer in the one shape."""
from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.gateway.fixtures import books, ok


def _burst(app, requests):
    def send(request):
        path, body, headers = request
        response = app.test_client().post(path, data=json.dumps(body), headers=headers,
                                          content_type="application/json")
        return response.status_code, response.get_json()
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(send, requests))


def test_concurrent_payments_never_overspend(app, world, store):
    world.top_up("a", 1000)
    _, wallet = world.wallet("a")
    merchant_id, _ = world.merchant("x")
    answers = _burst(app, [("/v1/payments", {"merchant_id": merchant_id, "amount": 100, "currency": "CNY"},
                            {"Authorization": f"Bearer {wallet.auth}", "Idempotency-Key": f"p{i}"})
                           for i in range(16)])
    assert Counter(status for status, _ in answers) == {201: 10, 402: 6}
    assert all(body["error"]["code"] == "insufficient_funds" for status, body in answers if status == 402)
    assert world.available("a") == 0 and world.merchant_available("x") == 1000
    assert books(store)[0]


def test_concurrent_refunds_never_exceed_the_payment(app, world, store):
    world.top_up("a", 1000)
    world.top_up("b", 1000)
    payment = world.pay("a", "x", 500)
    world.pay("b", "x", 1000)  # so the merchant could cover more than this payment
    _, merchant = world.merchant("x")
    answers = _burst(app, [("/v1/refunds", {"payment_id": payment["id"], "amount": 70},
                            {"Authorization": f"Bearer {merchant.auth}", "Idempotency-Key": f"r{i}"})
                           for i in range(12)])
    assert Counter(status for status, _ in answers) == {201: 7, 400: 5}
    after = ok(merchant.get(f"/v1/payments/{payment['id']}"))
    assert after["amount_refunded"] == 490 and world.available("a") == 500 + 490
    assert books(store)[0]


def _as(api, key: str) -> dict:
    return {"Authorization": f"Bearer {api.auth}", "Idempotency-Key": key}


def test_one_pay_code_at_many_tills_at_once_authorises_once(app, world, store):
    world.top_up("a", 1000)
    code = world.pay_code("a")
    _, shop = world.merchant("x")
    answers = _burst(app, [("/v1/pos/authorizations", {"pay_code": code, "amount": 300, "currency": "CNY"},
                            _as(shop, f"auth{i}")) for i in range(8)])
    assert Counter(status for status, _ in answers) == {201: 1, 404: 7}
    assert world.available("a") == 700
    assert books(store)[0]


def test_captures_and_voids_of_one_authorisation_at_once_close_it_once(app, world, store):
    world.top_up("a", 1000)
    _, shop = world.merchant("x")
    auth = ok(shop.post("/v1/pos/authorizations", {"pay_code": world.pay_code("a"), "amount": 600,
                                                   "currency": "CNY"}), 201)
    path = f"/v1/pos/authorizations/{auth['id']}"
    answers = _burst(app, [(f"{path}/{'capture' if i % 2 else 'void'}", {}, _as(shop, f"close{i}"))
                           for i in range(8)])
    closed = [body for status, body in answers if status == 200]
    assert len(closed) == 1 and Counter(status for status, _ in answers)[409] == 7
    captured = closed[0]["status"] == "captured"
    assert ok(shop.get(path))["status"] == closed[0]["status"]
    assert world.available("a") == (400 if captured else 1000)
    assert world.merchant_available("x") == (600 if captured else 0)
    assert books(store)[0]


def test_one_checkout_paid_by_many_wallets_at_once_is_paid_once(app, world, store):
    world.top_up("a", 5000)
    world.top_up("b", 5000)
    _, shop = world.merchant("x")
    checkout = ok(shop.post("/v1/checkouts", {"amount": 1200, "currency": "CNY"}), 201)
    payers = [world.wallet("a")[1], world.wallet("b")[1]]
    answers = _burst(app, [(f"/v1/checkouts/{checkout['id']}/payments", {}, _as(payers[i % 2], f"c{i}"))
                           for i in range(8)])
    assert Counter(status for status, _ in answers) == {201: 1, 409: 7}
    assert all(body["error"]["code"] == "checkout_already_paid" for status, body in answers if status == 409)
    assert world.available("a") + world.available("b") == 10_000 - 1200
    assert world.merchant_available("x") == 1200
    assert books(store)[0]


def test_one_signed_request_sent_many_times_at_once_is_let_in_once(app, world):
    terminal_id, till = world.terminal("x")
    path = f"/v1/terminals/{terminal_id}"
    headers = till._headers("GET", path, b"", None)  # one nonce for every copy

    def send(_):
        return app.test_client().get(path, headers=headers).status_code
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, range(8)))
    assert Counter(statuses) == {200: 1, 401: 7}
