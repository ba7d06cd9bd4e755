"""Idempotency-Key: one effect per key, the first answer replayed byte for byte."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.http import idempotency
from tests.gateway.fixtures import books, error, ok


@pytest.fixture
def funded(world):
    world.top_up("a", 1000)
    return world


def pay_body(world, amount=100):
    return {"merchant_id": world.merchant("x")[0], "amount": amount, "currency": "CNY"}


def test_same_key_same_body_replays_the_first_answer_and_moves_money_once(funded, store):
    _, wallet = funded.wallet("a")
    body = pay_body(funded)
    _, transfers = books(store)
    first = wallet.post("/v1/payments", body, key="order-17")
    again = wallet.post("/v1/payments", body, key="order-17")
    assert first.status_code == again.status_code == 201
    assert first.get_data() == again.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert books(store)[1] == transfers + 1
    assert funded.available("a") == 900


def test_same_key_different_body_is_409_and_moves_nothing(funded, nothing_moved):
    _, wallet = funded.wallet("a")
    ok(wallet.post("/v1/payments", pay_body(funded, 100), key="k1"), 201)
    check = nothing_moved()
    e = error(wallet.post("/v1/payments", pay_body(funded, 101), key="k1"), 409, "idempotency_error",
              "idempotency_key_reused")
    assert e["param"] == "Idempotency-Key"
    # the same bytes re-ordered are a different request too: the body is compared as sent
    reordered = json.dumps(dict(reversed(list(pay_body(funded, 100).items())))).encode()
    error(wallet.post("/v1/payments", raw=reordered, key="k1"), 409, "idempotency_error")
    check()


def test_same_key_on_another_path_is_409(funded):
    wallet_id, wallet = funded.wallet("a")
    ok(wallet.post(f"/v1/wallets/{wallet_id}/pay_codes", {}, key="shared"), 201)
    error(wallet.post("/v1/topups", {"wallet_id": wallet_id, "amount": 1, "currency": "CNY"}, key="shared"),
          409, "idempotency_error")


def test_keys_are_per_caller(funded):
    funded.top_up("b", 1000)
    _, a = funded.wallet("a")
    _, b = funded.wallet("b")
    pa = ok(a.post("/v1/payments", pay_body(funded), key="same"), 201)
    pb = ok(b.post("/v1/payments", pay_body(funded), key="same"), 201)
    assert pa["id"] != pb["id"] and pb["wallet_id"] == funded.wallet("b")[0]
    assert funded.merchant_available("x") == 200


def test_a_failed_request_records_nothing_so_the_key_can_be_retried(world):
    _, wallet = world.wallet("a")
    body = pay_body(world, 300)
    error(wallet.post("/v1/payments", body, key="retry-me"), 402, "payment_error", "insufficient_funds")
    error(wallet.post("/v1/payments", {**body, "amount": 0}, key="retry-me"), 400, "invalid_request_error")
    world.top_up("a", 300)
    payment = ok(wallet.post("/v1/payments", body, key="retry-me"), 201)
    assert ok(wallet.post("/v1/payments", body, key="retry-me"), 201) == payment
    assert world.available("a") == 0


def test_the_record_commits_with_the_effect_or_neither_does(funded, nothing_moved, monkeypatch):
    _, wallet = funded.wallet("a")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")
    check = nothing_moved()
    monkeypatch.setattr(idempotency, "record", fail)
    error(wallet.post("/v1/payments", pay_body(funded), key="k"), 500, "api_error")
    check()
    monkeypatch.undo()
    ok(wallet.post("/v1/payments", pay_body(funded), key="k"), 201)


@pytest.mark.parametrize("headers,code", [
    ({}, "idempotency_key_required"),
    ({"Idempotency-Key": "x" * 256}, "invalid_idempotency_key"),
    ({"Idempotency-Key": "tab\there"}, "invalid_idempotency_key"),
])
def test_every_post_needs_a_sane_key(funded, nothing_moved, headers, code):
    _, wallet = funded.wallet("a")
    check = nothing_moved()
    e = error(wallet.post("/v1/payments", pay_body(funded), key=None, headers=headers),
              400, "invalid_request_error", code)
    assert e["param"] == "Idempotency-Key"
    check()


def test_concurrent_requests_with_one_key_do_the_work_once(app, funded, store):
    _, wallet = funded.wallet("a")
    body = json.dumps(pay_body(funded, 10)).encode()
    _, transfers = books(store)

    def send(_):
        client = app.test_client()
        response = client.post("/v1/payments", data=body, headers={
            "Authorization": f"Bearer {wallet.auth}",
            "Idempotency-Key": "burst", "Content-Type": "application/json"})
        return response.status_code, response.get_data()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(16)))
    assert {a for a in answers} == {answers[0]} and answers[0][0] == 201
    assert books(store)[1] == transfers + 1
    assert funded.available("a") == 990


def test_terminal_retry_with_a_fresh_signature_replays(funded):
    _, till = funded.terminal("x")
    body = {"pay_code": funded.pay_code("a"), "amount": 50, "currency": "CNY"}
    first = till.post("/v1/pos/authorizations", body, key="till-1-sale-9")
    again = till.post("/v1/pos/authorizations", body, key="till-1-sale-9")  # new nonce
    assert first.status_code == again.status_code == 201
    assert first.get_data() == again.get_data()
    assert funded.available("a") == 950


def test_secrets_shown_once_are_replayed_but_never_stored(operator, store):
    customer = ok(operator.post("/v1/customers", {}), 201)
    wallet_body = {"customer_id": customer["id"], "currency": "CNY"}
    wallet = ok(operator.post("/v1/wallets", wallet_body, key="w1"), 201)
    merchant = ok(operator.post("/v1/merchants", {"name": "Kiosk"}, key="m1"), 201)
    terminal = ok(operator.post("/v1/terminals", {"merchant_id": merchant["id"]}, key="t1"), 201)
    # a retry (the first answer lost on the wire) still gets the secret
    assert ok(operator.post("/v1/wallets", wallet_body, key="w1"), 201)["credential"] == wallet["credential"]
    assert ok(operator.post("/v1/terminals", {"merchant_id": merchant["id"]}, key="t1"), 201) == terminal
    dump = every_row(store)
    for secret in (wallet["credential"], merchant["api_key"], terminal["secret"]):
        assert secret not in dump
    assert wallet["id"] in dump  # the dump does hold the objects themselves


def every_row(store) -> str:
    """Every row of every table as text: what a backup of the database would hold."""
    with store.read() as tx:
        if store.dialect == "sqlite":
            tables = [r["name"] for r in tx.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        else:
            tables = [r["table_name"] for r in tx.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        return "\n".join(f"{table}: {tx.query(f'SELECT * FROM {table}')}" for table in tables)


def test_a_tampered_record_is_not_replayed(funded, store):
    _, wallet = funded.wallet("a")
    ok(wallet.post("/v1/payments", pay_body(funded), key="sealed"), 201)
    with store.transaction() as tx:
        tx.execute("UPDATE idempotency_keys SET response = 'v1.AAAA' WHERE idem_key = 'sealed'")
    error(wallet.post("/v1/payments", pay_body(funded), key="sealed"), 500, "api_error")
    assert funded.available("a") == 900
