"""Many callers at once: no overspend, no double refund, every answer in the one shape."""
from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.gateway.conftest import books, ok


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
