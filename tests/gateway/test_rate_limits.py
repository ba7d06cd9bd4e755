"""Rate limits (OWASP API4), on each backend: per-credential requests per minute answer 429
with Retry-After in the one error shape and do nothing; the count is the database's, so two
gateways on one database (two nodes) and a burst of concurrent requests share one limit; a
wallet's bill lookups by number have a lower limit of their own."""
from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from gateway.http.app import create_app
from tests.gateway.fixtures import Api, error, ok


def limited(response, retry_after: int):
    err = error(response, 429, "rate_limit_error", "rate_limited")
    assert response.headers["Retry-After"] == str(retry_after)
    return err


def test_a_credential_over_its_minute_gets_429_until_the_next_window(world, config, clock, nothing_moved):
    config.rate_limit_per_minute = 4
    wallet_id, wallet = world.wallet("a")
    merchant_id, shop = world.merchant("x")
    world.top_up("a", 1_000)                                   # the operator is never limited
    clock.advance(15)
    for _ in range(3):
        ok(wallet.get(f"/v1/wallets/{wallet_id}"))
    world.pay("a", "x", 100)                                   # an idempotent POST counts in its own write
    check = nothing_moved()
    answer = wallet.post("/v1/payments", {"merchant_id": merchant_id, "amount": 100, "currency": "CNY"})
    assert "at most 4 a minute" in limited(answer, 45)["message"]
    limited(wallet.get(f"/v1/wallets/{wallet_id}"), 45)
    check()                                                    # the refused payment moved nothing
    for _ in range(4):
        ok(shop.get(f"/v1/merchants/{merchant_id}"))           # each credential has its own count
    ok(world.operator.get(f"/v1/wallets/{wallet_id}"))
    clock.advance(45)                                          # the next minute's window
    ok(wallet.get(f"/v1/wallets/{wallet_id}"))
    config.rate_limit_per_minute = 0                           # the operator's setting: no limit
    for _ in range(6):
        ok(wallet.get(f"/v1/wallets/{wallet_id}"))


def test_a_terminal_is_counted_with_its_nonce(world, config):
    config.rate_limit_per_minute = 2
    terminal_id, till = world.terminal("x")
    ok(till.get(f"/v1/terminals/{terminal_id}"))
    ok(till.get(f"/v1/terminals/{terminal_id}"))
    limited(till.get(f"/v1/terminals/{terminal_id}"), 60)


def test_two_gateways_on_one_database_share_the_limit(world, config, backend, clock):
    config.rate_limit_per_minute = 6
    wallet_id, wallet = world.wallet("a")
    other_store = backend.store(config)
    try:
        node_b = Api(create_app(config, store=other_store, clock=clock).test_client(), clock, wallet.auth)
        answers = [(wallet if n % 2 else node_b).get(f"/v1/wallets/{wallet_id}").status_code for n in range(10)]
    finally:
        other_store.close()
    assert answers == [200] * 6 + [429] * 4


def test_a_burst_at_once_passes_exactly_the_limit(app, world, config):
    config.rate_limit_per_minute = 5
    wallet_id, wallet = world.wallet("b")

    def send(n):
        return app.test_client().get(f"/v1/wallets/{wallet_id}", headers={"Authorization": f"Bearer {wallet.auth}"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(16)))
    assert Counter(r.status_code for r in answers) == {200: 5, 429: 11}
    assert all(set(json.loads(r.data)) == {"error"} for r in answers if r.status_code == 429)


def test_bill_lookups_by_number_are_throttled_per_wallet(operator, world, config):
    config.bill_lookups_per_minute = 3
    biller = ok(operator.post("/v1/billers", {"name": "Water", "city": "Hangzhou"}), 201)
    shop = operator.as_(biller["secret"])
    ok(shop.post("/v1/bills", {"consumer_number": "C-1", "period": "2026-11", "amount_due": 300,
                               "currency": "CNY", "due_date": "2099-12-31"}), 201)
    _, payer = world.wallet("a")
    _, other = world.wallet("b")
    found = [len(ok(payer.get(f"/v1/bills?biller_id={biller['id']}&consumer_number=C-{n}"))["data"])
             for n in (1, 2, 3)]
    assert found == [1, 0, 0]
    limited(payer.get(f"/v1/bills?biller_id={biller['id']}&consumer_number=C-4"), 60)
    limited(payer.get(f"/v1/bills?biller_id={biller['id']}&bill_number=B-1"), 60)
    ok(payer.get(f"/v1/wallets/{world.wallet('a')[0]}"))      # other requests go on
    ok(other.get(f"/v1/bills?biller_id={biller['id']}&consumer_number=C-1"))
    for _ in range(4):
        ok(shop.get("/v1/bills?consumer_number=C-1"))          # the biller reads its own bills freely
