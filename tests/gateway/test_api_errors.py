"""Bad input answers the one error shape with the right status, and posts nothing."""
from __future__ import annotations

import pytest

from gateway.core import ledger
from gateway.core.errors import Conflict, Declined, Forbidden, Invalid, NotFound
from gateway.http.errors import STATUS, api_error
from tests.gateway.fixtures import error, ok


@pytest.fixture
def paid(world):
    world.top_up("a", 1000)
    return world, world.pay("a", "x", 500)


BAD_PAYMENTS = [
    # (body, status, type, code, param)
    ({"amount": 100, "currency": "CNY"}, 400, "invalid_request_error", "missing_parameter", "merchant_id"),
    ({"merchant_id": "M", "amount": 0, "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": -5, "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": 10**30, "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": 1.5, "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": 100.0, "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": "100", "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": True, "currency": "CNY"}, 400, "invalid_request_error", "invalid_amount", "amount"),
    ({"merchant_id": "M", "amount": None, "currency": "CNY"}, 400, "invalid_request_error", "missing_parameter", "amount"),
    ({"merchant_id": "M", "amount": 100, "currency": "XYZ"}, 400, "invalid_request_error", "unknown_currency", "currency"),
    ({"merchant_id": "M", "amount": 100, "currency": "cny"}, 400, "invalid_request_error", "invalid_currency", "currency"),
    ({"merchant_id": "M", "amount": 100, "currency": 156}, 400, "invalid_request_error", "invalid_currency", "currency"),
    ({"merchant_id": "M", "amount": 100, "currency": "USD"}, 400, "invalid_request_error", "currency_mismatch", "currency"),
    ({"merchant_id": 42, "amount": 100, "currency": "CNY"}, 400, "invalid_request_error", "invalid_parameter", "merchant_id"),
    ({"merchant_id": "mer_000000000000000000000000", "amount": 100, "currency": "CNY"}, 404, "not_found", None, "merchant_id"),
    ({"merchant_id": "M", "amount": 100, "currency": "CNY", "tip": 5, "admin": True}, 400,
     "invalid_request_error", "unknown_parameter", "admin"),
    ({"merchant_id": "M", "amount": 1001, "currency": "CNY"}, 402, "payment_error", "insufficient_funds", "amount"),
    ({"merchant_id": "M", "amount": 100, "currency": "CNY", "description": ["x"]}, 400,
     "invalid_request_error", "invalid_parameter", "description"),
]


@pytest.mark.parametrize("body,status,type_,code,param", BAD_PAYMENTS)
def test_bad_payment_is_refused_and_posts_nothing(world, nothing_moved, body, status, type_, code, param):
    world.top_up("a", 1000)
    merchant_id, _ = world.merchant("x")
    body = {k: (merchant_id if v == "M" else v) for k, v in body.items()}
    _, wallet = world.wallet("a")
    check = nothing_moved()
    e = error(wallet.post("/v1/payments", body), status, type_, code)
    assert e["param"] == param
    check()


def test_unknown_fields_are_named_in_the_message(world):
    _, wallet = world.wallet("a")
    e = error(wallet.post("/v1/payments", {"amount": 1, "currency": "CNY", "merchant_id": "x", "zzz": 1, "aaa": 2}),
              400, "invalid_request_error", "unknown_parameter")
    assert "aaa" in e["message"] and "zzz" in e["message"]


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\"text\"", b"\xff\xfe", b"{\"amount\": NaN}",
                                 b"{\"amount\": Infinity}", b"null", b'{"amount": 1, "amount": 2}', b"[" * 30000 + b"]" * 30000])
def test_malformed_json_is_400(world, nothing_moved, raw):
    _, wallet = world.wallet("a")
    check = nothing_moved()
    error(wallet.post("/v1/payments", raw=raw), 400, "invalid_request_error", "malformed_json")
    check()


def test_refund_over_the_payment_is_refused_and_cumulative(paid, nothing_moved):
    world, payment = paid
    _, merchant = world.merchant("x")
    check = nothing_moved()
    error(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 501}),
          400, "invalid_request_error", "refund_exceeds_payment")
    check()
    ok(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 300}), 201)
    check = nothing_moved()
    e = error(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 201}),
              400, "invalid_request_error", "refund_exceeds_payment")
    assert e["param"] == "amount"
    ok(merchant.post("/v1/refunds", {"payment_id": payment["id"], "amount": 200}), 201)
    check2 = nothing_moved()
    error(merchant.post("/v1/refunds", {"payment_id": payment["id"]}), 400, "invalid_request_error",
          "refund_exceeds_payment")
    check2()


@pytest.mark.parametrize("path,body,code,param", [
    ("/v1/wallets", {"customer_id": "cus_000000000000000000000000", "currency": "CNY"}, None, "customer_id"),
    ("/v1/terminals", {"merchant_id": "mer_000000000000000000000000"}, None, "merchant_id"),
    ("/v1/topups", {"wallet_id": "wal_000000000000000000000000", "amount": 1, "currency": "CNY"}, None, "wallet_id"),
    ("/v1/refunds", {"payment_id": "pay_000000000000000000000000"}, None, "payment_id"),
])
def test_unknown_ids_in_bodies_are_404(world, nothing_moved, path, body, code, param):
    check = nothing_moved()
    caller = world.merchant("x")[1] if path == "/v1/refunds" else world.operator
    e = error(caller.post(path, body), 404, "not_found", code)
    assert e["param"] == param
    check()


@pytest.mark.parametrize("path", ["/v1/customers/cus_nope1234", "/v1/wallets/wal_nope12345",
                                  "/v1/wallets/wal_nope12345/balance", "/v1/merchants/mer_nope1234",
                                  "/v1/payments/pay_nope1234", "/v1/refunds/re_nope12345",
                                  "/v1/topups/top_nope1234", "/v1/terminals/term_nope123",
                                  "/v1/pos/authorizations/auth_nope123"])
def test_unknown_ids_in_paths_are_404(operator, path):
    error(operator.get(path), 404, "not_found", "resource_missing")


def test_unknown_route_and_wrong_method_use_the_error_shape(operator, client):
    error(operator.get("/v1/nothing-here"), 404, "not_found", "route_not_found")
    error(client.get("/"), 404, "not_found", "route_not_found")
    error(client.delete("/v1/payments"), 405, "invalid_request_error", "method_not_allowed")


def test_body_too_large_is_413(world):
    _, wallet = world.wallet("a")
    error(wallet.post("/v1/payments", raw=b" " * (65 * 1024)), 413, "invalid_request_error", "body_too_large")


def test_internal_error_is_500_with_no_detail(app, operator, monkeypatch):
    from gateway.core import wallets

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals /etc/passwd")
    monkeypatch.setattr(wallets, "create_customer", broken)
    response = operator.post("/v1/customers", {})
    e = error(response, 500, "api_error", "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert e["param"] is None


def test_locked_wallet_cannot_pay_or_make_pay_codes(world, store, nothing_moved):
    world.top_up("a", 1000)
    wallet_id, wallet = world.wallet("a")
    with store.transaction() as tx:
        tx.execute("UPDATE wallets SET status = 'locked' WHERE id = :id", {"id": wallet_id})
    check = nothing_moved()
    merchant_id, _ = world.merchant("x")
    error(wallet.post("/v1/payments", {"merchant_id": merchant_id, "amount": 1, "currency": "CNY"}),
          409, "conflict", "wallet_locked")
    error(wallet.post(f"/v1/wallets/{wallet_id}/pay_codes"), 409, "conflict", "wallet_locked")
    # the wallet can still see its money
    assert ok(wallet.get(f"/v1/wallets/{wallet_id}/balance"))["available"] == 1000
    check()


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=-1", "after=zzz", "foo=1"])
def test_bad_page_arguments(world, query):
    wallet_id, wallet = world.wallet("a")
    error(wallet.get(f"/v1/wallets/{wallet_id}/statement?{query}"), 400, "invalid_request_error")


@pytest.mark.parametrize("query, param", [("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"),
                                          ("after=" + "x" * 201, "after"), ("foo=1", "foo")])
def test_lists_with_and_without_filters_refuse_bad_page_arguments_alike(world, query, param):
    wallet_id, wallet = world.wallet("a")
    for path in (f"/v1/wallets/{wallet_id}/statement", "/v1/bill-payments"):
        err = error(wallet.get(f"{path}?{query}"), 400, "invalid_request_error")
        assert err["param"] == param, path


LEDGER_STATUSES = [  # each ledger error, the status and type the API answers it with
    (ledger.InsufficientFunds("w has 1 available, 2 needed"), 402, "payment_error"),
    (ledger.AccountNotFound("no account acc_x"), 404, "not_found"),
    (ledger.PendingNotFound("no pending p"), 404, "not_found"),
    (ledger.TransferExists("t exists", "amount"), 409, "conflict"),
    (ledger.PendingAlreadyResolved("p is posted"), 409, "conflict"),
    (ledger.PendingExpired("p expired"), 409, "conflict"),
    (ledger.CurrencyMismatch("CNY is not USD", "currency"), 400, "invalid_request_error"),
    (ledger.InvalidAmount("amount 0", "amount"), 400, "invalid_request_error"),
    (ledger.LedgerError("invalid_metadata", "metadata must be an object", "metadata"), 400, "invalid_request_error"),
]


@pytest.mark.parametrize("err,status,type_", LEDGER_STATUSES)
def test_one_table_maps_each_refusal_of_the_core_to_its_status(err, status, type_):
    answer = api_error(err)
    assert (answer.status, answer.body()["error"]["type"], answer.code) == (status, type_, err.code)
    assert "acc_" not in answer.message  # ledger accounts are internal


def test_the_table_covers_every_kind_of_refusal_and_knows_no_other():
    kinds = {Invalid: 400, Declined: 402, Forbidden: 403, NotFound: 404, Conflict: 409}
    assert {kind: status for kind, (status, _) in STATUS.items()} == kinds
    for kind, status in kinds.items():
        answer = api_error(kind("some_code", "Some message.", "field"))
        assert (answer.status, answer.code, answer.param) == (status, "some_code", "field" if kind is not Declined
                                                              else "amount")
