"""Every endpoint's happy path: ids, amounts, currency, status and times come back,
and the ledger moves exactly as the resource says."""
from __future__ import annotations

import re

from tests.gateway.fixtures import books, ok


def test_customer_create_and_get(operator):
    customer = ok(operator.post("/v1/customers", {"name": "Li Wei", "email": "li@example.cn",
                                                  "external_ref": "card-7"}), 201)
    assert customer["id"].startswith("cus_")
    assert customer["created_at"] == "2026-11-27T09:00:00Z"
    assert ok(operator.get(f"/v1/customers/{customer['id']}")) == customer


def test_wallet_credential_is_shown_once_and_stored_hashed(operator, store):
    customer = ok(operator.post("/v1/customers", {}), 201)
    wallet = ok(operator.post("/v1/wallets", {"customer_id": customer["id"], "currency": "CNY"}), 201)
    assert wallet["id"].startswith("wal_") and wallet["status"] == "active"
    assert wallet["credential"].startswith("wk_") and len(wallet["credential"]) > 40
    got = ok(operator.get(f"/v1/wallets/{wallet['id']}"))
    assert "credential" not in got and got["customer_id"] == customer["id"]
    with store.read() as tx:
        row = tx.one("SELECT * FROM wallets WHERE id = :id", {"id": wallet["id"]})
    assert wallet["credential"] not in str(row)
    # the wallet authenticates with it and sees itself
    assert ok(operator.as_(wallet["credential"]).get(f"/v1/wallets/{wallet['id']}"))["id"] == wallet["id"]


def test_merchant_api_key_is_shown_once_and_stored_hashed(operator, store):
    merchant = ok(operator.post("/v1/merchants", {"name": "Corner shop"}), 201)
    assert merchant["id"].startswith("mer_") and merchant["currency"] == "CNY"
    assert merchant["api_key"].startswith("sk_")
    with store.read() as tx:
        row = tx.one("SELECT * FROM merchants WHERE id = :id", {"id": merchant["id"]})
    assert merchant["api_key"] not in str(row)
    me = operator.as_(merchant["api_key"])
    assert ok(me.get(f"/v1/merchants/{merchant['id']}"))["name"] == "Corner shop"
    assert ok(me.get(f"/v1/merchants/{merchant['id']}/balance"))["available"] == 0


def test_terminal_registration_and_signed_read(world, operator):
    terminal_id, terminal = world.terminal("x")
    merchant_id, merchant = world.merchant("x")
    got = ok(terminal.get(f"/v1/terminals/{terminal_id}"))
    assert got["merchant_id"] == merchant_id and got["key_id"].startswith("tk_")
    assert "secret" not in got
    assert ok(merchant.get(f"/v1/terminals/{terminal_id}"))["id"] == terminal_id
    assert ok(operator.get(f"/v1/terminals/{terminal_id}"))["id"] == terminal_id


def test_topup_credits_the_wallet_from_the_funding_source(world, store):
    wallet_id, wallet = world.wallet("a")
    topup = world.top_up("a", 5000)
    assert (topup["amount"], topup["currency"], topup["status"]) == (5000, "CNY", "succeeded")
    assert topup["id"].startswith("top_")
    own = ok(wallet.post("/v1/topups", {"wallet_id": wallet_id, "amount": 250, "currency": "CNY"}), 201)
    assert ok(wallet.get(f"/v1/topups/{own['id']}")) == own
    balance = ok(wallet.get(f"/v1/wallets/{wallet_id}/balance"))
    assert balance == {"object": "balance", "owner_id": wallet_id, "currency": "CNY",
                       "available": 5250, "posted": 5250, "pending_debits": 0, "pending_credits": 0}
    assert books(store)[1] == 2


def test_payment_moves_money_and_is_readable_by_payer_and_payee(world):
    world.top_up("a", 1000)
    payment = world.pay("a", "x", 320)
    assert payment["id"].startswith("pay_") and payment["status"] == "succeeded"
    assert (payment["amount"], payment["amount_refunded"], payment["currency"]) == (320, 0, "CNY")
    _, wallet = world.wallet("a")
    _, merchant = world.merchant("x")
    assert ok(wallet.get(f"/v1/payments/{payment['id']}")) == payment
    assert ok(merchant.get(f"/v1/payments/{payment['id']}")) == payment
    assert world.available("a") == 680 and world.merchant_available("x") == 320


def test_payment_list_is_the_callers_own_newest_first_and_pages(world, clock):
    world.top_up("a", 1000)
    world.top_up("b", 1000)
    mine = []
    for n in (1, 2, 3):
        clock.advance(1)
        mine.append(world.pay("a", "x", n)["id"])
    world.pay("b", "x", 4)
    _, wallet = world.wallet("a")
    first = ok(wallet.get("/v1/payments?limit=2"))
    assert [p["id"] for p in first["data"]] == mine[::-1][:2] and first["has_more"]
    second = ok(wallet.get(f"/v1/payments?limit=2&after={first['next_cursor']}"))
    assert [p["id"] for p in second["data"]] == mine[:1] and not second["has_more"]
    _, merchant = world.merchant("x")
    assert len(ok(merchant.get("/v1/payments?limit=100"))["data"]) == 4


def test_partial_then_full_refund_is_cumulative(world):
    world.top_up("a", 1000)
    payment = world.pay("a", "x", 600)
    _, merchant = world.merchant("x")
    first = ok(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 200,
                                            "reason": "one item returned"}), 201)
    assert first["id"].startswith("re_") and first["amount"] == 200
    assert ok(merchant.get(f"/v1/payments/{payment['id']}"))["status"] == "partially_refunded"
    rest = ok(merchant.post("/v1/refunds", {"payment_id": payment["id"]}), 201)
    assert rest["amount"] == 400
    after = ok(merchant.get(f"/v1/payments/{payment['id']}"))
    assert (after["status"], after["amount_refunded"]) == ("refunded", 600)
    assert world.available("a") == 1000 and world.merchant_available("x") == 0
    _, wallet = world.wallet("a")
    assert ok(wallet.get(f"/v1/refunds/{first['id']}")) == first


def test_statement_pages_with_a_cursor_newest_first(world):
    for amount in (100, 200, 300):
        world.top_up("a", amount)
    world.pay("a", "x", 50)
    wallet_id, wallet = world.wallet("a")
    page = ok(wallet.get(f"/v1/wallets/{wallet_id}/statement?limit=3"))
    assert [e["change"] for e in page["data"]] == [-50, 300, 200]
    assert [e["balance_after"] for e in page["data"]] == [550, 600, 300]
    assert page["has_more"] and all(e["transfer_id"][:4] in ("top_", "pay_") for e in page["data"])
    assert all("counterparty_account_id" not in e for e in page["data"])
    assert all(e["created_at"] == "2026-11-27T09:00:00Z" for e in page["data"])
    rest = ok(wallet.get(f"/v1/wallets/{wallet_id}/statement?limit=3&after={page['next_cursor']}"))
    assert [e["change"] for e in rest["data"]] == [100] and rest["next_cursor"] is None
    merchant_id, merchant = world.merchant("x")
    assert [e["change"] for e in ok(merchant.get(f"/v1/merchants/{merchant_id}/statement"))["data"]] == [50]


def test_webhook_event_is_committed_with_the_payment(world, store):
    world.top_up("a", 1000)
    payment = world.pay("a", "x", 100)
    merchant_id, merchant = world.merchant("x")
    refund = ok(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 40}), 201)
    with store.read() as tx:
        events = tx.query("SELECT type, body FROM webhook_events WHERE merchant_id = :m ORDER BY type",
                          {"m": merchant_id})
    assert [e["type"] for e in events] == ["payment.succeeded", "refund.succeeded"]
    assert payment["id"] in events[0]["body"] and refund["id"] in events[1]["body"]


def test_times_are_iso_8601_utc(world, clock):
    clock.advance(3661)
    world.top_up("a", 10)
    payment = world.pay("a", "x", 10)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", payment["created_at"])
    assert payment["created_at"] == "2026-11-27T10:01:01Z"


