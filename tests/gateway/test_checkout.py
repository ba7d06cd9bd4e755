"""Shop QR payments over the API: the merchant's static code, a till's single-use checkout
code, and customer-presented signed pay codes charged once."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from protocol import ed25519, emvqr, signed_qr
from tests.gateway.fixtures import START, books, error, ok
from wallet import qr as wallet_qr


def test_the_static_code_names_the_merchant_and_carries_no_amount(world):
    merchant_id, shop = world.merchant("x")
    code = emvqr.read_tapstack(emvqr.parse(ok(shop.get(f"/v1/merchants/{merchant_id}/qr"))["payload"]), START)
    assert (code.kind, code.merchant_id, code.amount, code.qr.name) == ("merchant", merchant_id, None, "Shop x")
    assert (code.qr.city, code.qr.mcc) == ("Beijing", "5411")
    profile = ok(shop.post(f"/v1/merchants/{merchant_id}/qr-profile",
                           {"city": "Suzhou", "mcc": "5812", "store_label": "Store 7"}))
    assert profile["city"] == "Suzhou"
    png = shop.get(f"/v1/merchants/{merchant_id}/qr.png")
    qr = emvqr.parse(wallet_qr.read_text(png.get_data()))
    assert (qr.city, qr.mcc, qr.additional[emvqr.STORE_LABEL], qr.dynamic) == ("Suzhou", "5812", "Store 7", False)
    other_id, _ = world.merchant("y")
    error(shop.get(f"/v1/merchants/{other_id}/qr"), 404, "not_found")
    error(shop.post(f"/v1/merchants/{merchant_id}/qr-profile", {"city": "A city far too long"}), 400,
          "invalid_request_error")


def test_a_checkout_is_paid_once_and_a_second_payer_is_told(world, nothing_moved):
    merchant_id, _ = world.merchant("x")
    terminal_id, till = world.terminal("x")
    world.top_up("a", 5_000)
    world.top_up("b", 5_000)
    checkout = ok(till.post("/v1/checkouts", {"amount": 2_350, "currency": "CNY", "terminal_label": "Lane 3"}), 201)
    assert checkout["status"] == "open" and checkout["terminal_id"] == terminal_id
    code = emvqr.read_tapstack(emvqr.parse(checkout["qr_payload"]), START)
    assert (code.kind, code.amount, code.terminal_label, code.reference) == ("checkout", 2_350, "Lane 3",
                                                                           checkout["id"])
    assert code.expires_at == START + timedelta(seconds=300)
    png = till.get(f"/v1/checkouts/{checkout['id']}/qr.png")
    assert wallet_qr.read_text(png.get_data()) == checkout["qr_payload"]
    _, wallet_a = world.wallet("a")
    _, wallet_b = world.wallet("b")
    payment = ok(wallet_a.post(f"/v1/checkouts/{checkout['id']}/payments"), 201)
    assert (payment["amount"], payment["merchant_id"]) == (2_350, merchant_id)
    check = nothing_moved()
    error(wallet_b.post(f"/v1/checkouts/{checkout['id']}/payments"), 409, "conflict", "checkout_already_paid")
    error(wallet_a.post(f"/v1/checkouts/{checkout['id']}/payments"), 409, "conflict", "checkout_already_paid")
    check()
    seen = ok(till.get(f"/v1/checkouts/{checkout['id']}"))
    assert (seen["status"], seen["payment_id"]) == ("paid", payment["id"])
    assert world.available("a") == 2_650 and world.merchant_available("x") == 2_350


def test_an_expired_or_cancelled_checkout_is_refused(world, clock, nothing_moved):
    _, shop = world.merchant("x")
    world.top_up("a", 5_000)
    _, wallet = world.wallet("a")
    late = ok(shop.post("/v1/checkouts", {"amount": 100, "currency": "CNY", "expires_in": 60}), 201)
    dropped = ok(shop.post("/v1/checkouts", {"amount": 100, "currency": "CNY"}), 201)
    assert ok(shop.post(f"/v1/checkouts/{dropped['id']}/cancel"))["status"] == "cancelled"
    check = nothing_moved()
    error(wallet.post(f"/v1/checkouts/{dropped['id']}/payments"), 409, "conflict", "checkout_cancelled")
    clock.advance(60)
    err = error(wallet.post(f"/v1/checkouts/{late['id']}/payments"), 409, "conflict", "checkout_expired")
    assert "new code" in err["message"]
    assert ok(wallet.get(f"/v1/checkouts/{late['id']}"))["status"] == "expired"
    check()


def test_another_merchants_checkout_is_not_found(world):
    _, shop_x = world.merchant("x")
    _, shop_y = world.merchant("y")
    checkout = ok(shop_x.post("/v1/checkouts", {"amount": 100, "currency": "CNY"}), 201)
    error(shop_y.get(f"/v1/checkouts/{checkout['id']}"), 404, "not_found")
    error(shop_y.post(f"/v1/checkouts/{checkout['id']}/cancel"), 404, "not_found")


# -- signed pay codes -------------------------------------------------------------------------

@pytest.fixture
def card(world):
    """The wallet a's certified card: (seed, certificate bytes)."""
    wallet_id, wallet = world.wallet("a")
    seed = hashlib.sha256(b"test wallet a card").digest()
    made = ok(wallet.post(f"/v1/wallets/{wallet_id}/card", {"public_key": ed25519.public_key(seed).hex()}), 201)
    return seed, bytes.fromhex(made["certificate"])


def pay_code(card, clock, nonce=b"\x01" * 8, **options) -> str:
    seed, certificate = card
    return signed_qr.pay_code(seed, certificate, issued_at=clock(), nonce=nonce, **options)


def charge(till, code, amount=1_200, **body):
    return till.post("/v1/paycode-payments", {"pay_code": code, "amount": amount, "currency": "CNY", **body})


def test_a_pay_code_pays_the_merchant_once(world, card, clock, nothing_moved, store):
    wallet_id, _ = world.wallet("a")
    merchant_id, _ = world.merchant("x")
    _, till = world.terminal("x")
    world.top_up("a", 5_000)
    code = pay_code(card, clock)
    first = till.post("/v1/paycode-payments", {"pay_code": code, "amount": 1_200, "currency": "CNY"},
                      key="sale-1")
    payment = ok(first, 201)
    assert (payment["wallet_id"], payment["merchant_id"], payment["amount"]) == (wallet_id, merchant_id, 1_200)
    retry = till.post("/v1/paycode-payments", {"pay_code": code, "amount": 1_200, "currency": "CNY"}, key="sale-1")
    assert retry.get_data() == first.get_data()  # the same request retried: the same answer
    check = nothing_moved()
    err = error(charge(till, code), 409, "conflict", "pay_code_used")
    assert payment["id"] in err["message"]
    _, shop_y = world.merchant("y")
    error(charge(shop_y, code), 409, "conflict", "pay_code_used")
    check()
    assert world.available("a") == 3_800
    books(store)


def test_one_pay_code_charged_at_many_tills_at_once_pays_once(app, world, card, clock, store):
    world.top_up("a", 5_000)
    _, shop = world.merchant("x")
    body = json.dumps({"pay_code": pay_code(card, clock), "amount": 1_200, "currency": "CNY"})

    def send(i):
        response = app.test_client().post("/v1/paycode-payments", data=body, headers={
            "Authorization": f"Bearer {shop.auth}", "Idempotency-Key": f"till-{i}",
            "Content-Type": "application/json"})
        return response.status_code, response.get_json()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))
    assert Counter(status for status, _ in answers) == {201: 1, 409: 7}
    assert all(body["error"]["code"] == "pay_code_used" for status, body in answers if status == 409)
    assert world.available("a") == 3_800 and world.merchant_available("x") == 1_200
    books(store)


def test_a_pay_code_that_is_expired_forged_over_its_limit_or_a_ticket_is_refused(world, card, clock, nothing_moved):
    _, till = world.terminal("x")
    world.top_up("a", 5_000)
    check = nothing_moved()
    stale = pay_code(card, clock, nonce=b"\x02" * 8)
    limited = pay_code(card, clock, nonce=b"\x03" * 8, limit=1_000, currency="CNY")
    error(charge(till, limited, 1_001), 400, "invalid_request_error", "above_pay_code_limit")
    fresh = pay_code(card, clock, nonce=b"\x04" * 8)
    forged = fresh[:-3] + ("A" if fresh[-3] != "A" else "B") + fresh[-2:]
    err = error(charge(till, forged), 400, "invalid_request_error", "invalid_pay_code")
    assert err["param"] == "pay_code"
    error(charge(till, "not a code"), 400, "invalid_request_error", "invalid_pay_code")
    seed, certificate = card
    ticket = signed_qr.ticket_code(seed, certificate, issued_at=clock(), nonce=b"\x05" * 8, ticket_id=b"T" * 8,
                                   product=1, route="42", valid_from=clock(),
                                   valid_until=clock() + timedelta(hours=1))
    error(charge(till, ticket), 400, "invalid_request_error", "not_a_pay_code")
    clock.advance(120)
    error(charge(till, stale), 409, "conflict", "pay_code_expired")
    check()


def test_a_pay_code_of_a_locked_wallet_is_refused(world, card, clock, operator, nothing_moved):
    wallet_id, _ = world.wallet("a")
    _, till = world.terminal("x")
    world.top_up("a", 5_000)
    ok(operator.post(f"/v1/wallets/{wallet_id}/lock", {"reason": "phone lost"}))
    check = nothing_moved()
    error(charge(till, pay_code(card, clock)), 409, "conflict", "card_denied")
    check()


def test_a_checkout_without_a_label_shows_the_tills_name(world):
    _, till = world.terminal("x")
    _, shop = world.merchant("x")
    assert ok(till.post("/v1/checkouts", {"amount": 100, "currency": "CNY"}), 201)["terminal_label"] == "till 1"
    assert ok(shop.post("/v1/checkouts", {"amount": 100, "currency": "CNY"}), 201)["terminal_label"] == "till"
    error(shop.post("/v1/checkouts", {"amount": 100, "currency": "USD"}), 400, "invalid_request_error",
          "currency_mismatch")
