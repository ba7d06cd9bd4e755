"""Utility bills over the API: billers issue bills (one by one, JSON or CSV batches), serve
their QR codes, wallets find and pay them under the partial/overpayment rules, billers
reconcile. Money moves once, with the bill's status, or not at all."""
from __future__ import annotations

import threading

import pytest

from gateway.core import bills as bill_rules
from protocol import emvqr
from tests.gateway.fixtures import START, books, error, ok
from wallet import qr as wallet_qr


@pytest.fixture
def biller(operator):
    """(biller id, the biller's Api)."""
    made = ok(operator.post("/v1/billers", {"name": "City Water Supply Company", "city": "Hangzhou"}), 201)
    assert made["api_key"].startswith("sk_")
    return made["id"], operator.as_(made["api_key"])


def issue(biller_api, **fields) -> dict:
    body = {"consumer_number": "C-1001", "period": "2026-11", "amount_due": 12_345, "currency": "CNY",
            "due_date": "2026-12-10", **fields}
    return ok(biller_api.post("/v1/bills", body), 201)


def pay(world, wallet: str, bill_id: str, **body):
    _, api = world.wallet(wallet)
    return api.post(f"/v1/bills/{bill_id}/payments", body)


def biller_available(operator, biller_id) -> int:
    return ok(operator.get(f"/v1/merchants/{biller_id}/balance"))["available"]


def test_a_biller_is_a_merchant_with_a_biller_account_and_only_it_issues_bills(operator, biller, world, store):
    biller_id, api = biller
    assert ok(api.get(f"/v1/billers/{biller_id}"))["city"] == "Hangzhou"
    with store.read() as tx:
        kind = tx.one("SELECT a.kind FROM merchants m JOIN ledger_accounts a ON a.id = m.account_id"
                      " WHERE m.id = :id", {"id": biller_id})["kind"]
    assert kind == "biller"
    _, shop = world.merchant("x")
    error(shop.post("/v1/bills", {"consumer_number": "C-1", "period": "2026-11", "amount_due": 100,
                                  "currency": "CNY", "due_date": "2026-12-01"}), 403, "permission_error")
    error(shop.get(f"/v1/billers/{biller_id}"), 404, "not_found")


def test_a_bill_has_its_fields_and_a_dynamic_emvco_code_as_payload_png_and_svg(biller, world):
    biller_id, api = biller
    bill = issue(api, bill_number="WB-2026-11-0001")
    assert bill["id"].startswith("bill_") and bill["status"] == "open"
    assert (bill["amount_outstanding"], bill["minimum_payment"]) == (12_345, 12_345)
    assert bill["expires_at"] == "2027-01-10T00:00:00Z"  # due date + 31 days, at midnight UTC
    _, wallet = world.wallet("a")
    payload = ok(wallet.get(f"/v1/bills/{bill['id']}/qr"))["payload"]
    code = emvqr.read_tapstack(emvqr.parse(payload), START)
    assert (code.kind, code.merchant_id, code.bill_number, code.reference, code.amount, code.currency) == (
        "bill", biller_id, "WB-2026-11-0001", "C-1001", 12_345, "CNY")
    assert code.qr.name == "City Water Supply Company"[:25] and code.qr.city == "Hangzhou"
    png = wallet.get(f"/v1/bills/{bill['id']}/qr.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert wallet_qr.read_text(png.get_data()) == payload
    svg = api.get(f"/v1/bills/{bill['id']}/qr.svg")
    assert svg.mimetype == "image/svg+xml" and svg.get_data(as_text=True).lstrip().startswith("<")


def test_paying_a_bill_moves_money_once_and_the_second_payer_is_told_it_is_paid(operator, biller, world, store):
    biller_id, api = biller
    world.top_up("a", 20_000)
    world.top_up("b", 20_000)
    bill = issue(api)
    receipt = ok(pay(world, "a", bill["id"]), 201)
    assert receipt["id"].startswith("bpay_") and receipt["amount"] == 12_345
    assert (receipt["bill"]["status"], receipt["bill"]["amount_outstanding"]) == ("paid", 0)
    assert world.available("a") == 20_000 - 12_345 and biller_available(operator, biller_id) == 12_345
    err = error(pay(world, "b", bill["id"]), 409, "conflict", "bill_already_paid")
    assert "already paid" in err["message"]
    assert world.available("b") == 20_000 and biller_available(operator, biller_id) == 12_345
    # the receipt: the payer and the biller read it, another wallet cannot
    _, wallet_a = world.wallet("a")
    _, wallet_b = world.wallet("b")
    assert ok(wallet_a.get(f"/v1/bill-payments/{receipt['id']}"))["bill_number"] == bill["bill_number"]
    assert ok(api.get(f"/v1/bill-payments/{receipt['id']}"))["wallet_id"] == world.wallet("a")[0]
    error(wallet_b.get(f"/v1/bill-payments/{receipt['id']}"), 404, "not_found")
    assert ok(api.get(f"/v1/bills/{bill['id']}"))["paid_at"] == "2026-11-27T09:00:00Z"
    books(store)


def test_a_retried_payment_replays_its_answer_and_pays_once(operator, biller, world):
    biller_id, api = biller
    world.top_up("a", 20_000)
    bill = issue(api)
    _, wallet = world.wallet("a")
    first = wallet.post(f"/v1/bills/{bill['id']}/payments", {}, key="pay-water-1")
    again = wallet.post(f"/v1/bills/{bill['id']}/payments", {}, key="pay-water-1")
    assert first.status_code == again.status_code == 201
    assert first.get_data() == again.get_data() and again.headers["Idempotent-Replayed"] == "true"
    assert world.available("a") == 20_000 - 12_345 and biller_available(operator, biller_id) == 12_345


def test_part_payments_down_to_the_minimum_and_never_above_what_is_outstanding(biller, world, nothing_moved):
    _, api = biller
    world.top_up("a", 50_000)
    bill = issue(api, amount_due=10_000, minimum_payment=3_000)
    check = nothing_moved()
    err = error(pay(world, "a", bill["id"], amount=2_999), 400, "invalid_request_error", "below_minimum_payment")
    assert "3000" in err["message"] and err["param"] == "amount"
    err = error(pay(world, "a", bill["id"], amount=10_001), 400, "invalid_request_error", "overpayment")
    assert "10000 outstanding" in err["message"]
    check()
    part = ok(pay(world, "a", bill["id"], amount=8_000), 201)
    assert (part["bill"]["status"], part["bill"]["amount_outstanding"]) == ("partially_paid", 2_000)
    error(pay(world, "a", bill["id"], amount=2_001), 400, "invalid_request_error", "overpayment")
    rest = ok(pay(world, "a", bill["id"], amount=2_000), 201)  # below the minimum, but all that is left
    assert rest["bill"]["status"] == "paid" and world.available("a") == 40_000


def test_without_a_minimum_a_bill_is_paid_whole(biller, world, nothing_moved):
    _, api = biller
    world.top_up("a", 50_000)
    bill = issue(api, amount_due=10_000)
    check = nothing_moved()
    error(pay(world, "a", bill["id"], amount=5_000), 400, "invalid_request_error", "below_minimum_payment")
    check()


def test_expired_and_cancelled_bills_take_no_payment_and_have_no_code(biller, world, clock, nothing_moved):
    _, api = biller
    world.top_up("a", 50_000)
    late = issue(api, expires_at="2026-11-27T10:00:00Z")
    withdrawn = issue(api, consumer_number="C-2002")
    ok(api.post(f"/v1/bills/{withdrawn['id']}/cancel"))
    check = nothing_moved()
    err = error(pay(world, "a", withdrawn["id"]), 409, "conflict", "bill_cancelled")
    assert "cancelled" in err["message"]
    clock.advance(3600)
    error(pay(world, "a", late["id"]), 409, "conflict", "bill_expired")
    _, wallet = world.wallet("a")
    error(wallet.get(f"/v1/bills/{late['id']}/qr.png"), 409, "conflict", "bill_expired")
    assert ok(wallet.get(f"/v1/bills/{late['id']}"))["status"] == "expired"
    check()


def test_a_bill_once_paid_in_part_cannot_be_cancelled(biller, world):
    _, api = biller
    world.top_up("a", 50_000)
    bill = issue(api, amount_due=10_000, minimum_payment=1_000)
    ok(pay(world, "a", bill["id"], amount=1_000), 201)
    error(api.post(f"/v1/bills/{bill['id']}/cancel"), 409, "conflict", "bill_partially_paid")


def test_bad_bills_are_refused_with_the_field_named(biller):
    _, api = biller
    base = {"consumer_number": "C-1", "period": "2026-11", "amount_due": 100, "currency": "CNY",
            "due_date": "2026-12-01"}
    for change, param in (({"amount_due": 1.5}, "amount_due"), ({"period": "2026-13"}, "period"),
                          ({"due_date": "2026-02-30"}, "due_date"), ({"currency": "USD"}, "currency"),
                          ({"consumer_number": "way too long for the QR code field"}, "consumer_number"),
                          ({"minimum_payment": 101}, "minimum_payment"),
                          ({"expires_at": "2026-11-27T08:00:00Z"}, "expires_at")):
        err = error(api.post("/v1/bills", {**base, **change}), 400, "invalid_request_error")
        assert err["param"] == param, (change, err)
    issue(api, bill_number="N-1")
    error(api.post("/v1/bills", {**base, "bill_number": "N-1"}), 409, "conflict", "duplicate_bill_number")


def test_a_json_batch_reports_bad_rows_by_number_keeps_good_ones_and_is_idempotent(biller, store):
    _, api = biller
    rows = [{"consumer_number": "C-1", "period": "2026-11", "amount_due": 1_000, "currency": "CNY",
             "due_date": "2026-12-01", "bill_number": "N-1"},
            {"consumer_number": "C-2", "period": "2026-11", "amount_due": "12", "currency": "CNY",
             "due_date": "2026-12-01"},
            {"consumer_number": "C-3", "period": "2026-11", "amount_due": 3_000, "currency": "CNY",
             "due_date": "2026-12-01", "bill_number": "N-1"},
            {"consumer_number": "C-4", "period": "2026-11", "amount_due": 4_000, "currency": "CNY",
             "due_date": "2026-12-01"}]
    first = api.post("/v1/bill-batches", {"bills": rows}, key="batch-2026-11")
    result = ok(first, 201)
    assert (result["rows"], result["accepted"], result["rejected"]) == (4, 2, 2)
    assert [(e["row"], e["code"], e["param"]) for e in result["errors"]] == [
        (2, "invalid_amount", "amount_due"), (3, "duplicate_bill_number", "bill_number")]
    assert [b["consumer_number"] for b in result["bills"]] == ["C-1", "C-4"]
    again = api.post("/v1/bill-batches", {"bills": rows}, key="batch-2026-11")
    assert again.get_data() == first.get_data()
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM bill_bills")["n"] == 2


def test_a_csv_batch_reports_rows_by_line(biller):
    _, api = biller
    text = ("consumer_number,period,amount_due,currency,due_date,minimum_payment\n"
            "C-1,2026-11,1000,CNY,2026-12-01,\n"
            "C-2,2026-11,ten,CNY,2026-12-01,\n"
            "C-3,2026/11,3000,CNY,2026-12-01,\n"
            "C-4,2026-11,4000,CNY,2026-12-01,1000\n"
            "C-5,2026-11,5000,CNY,2026-12-01,1000,surplus\n")
    result = ok(api.post("/v1/bill-batches", raw=text.encode(), headers={"Content-Type": "text/csv"}), 201)
    assert [(e["row"], e["param"]) for e in result["errors"]] == [(3, "amount_due"), (4, "period"), (6, None)]
    assert result["errors"][2]["message"] == "7 cells; the header names 6."
    assert [(b["consumer_number"], b["minimum_payment"]) for b in result["bills"]] == [("C-1", 1000), ("C-4", 1000)]
    err = error(api.post("/v1/bill-batches", raw=b"who,period\nx,y\n", headers={"Content-Type": "text/csv"}),
                400, "invalid_request_error", "unknown_parameter")
    assert err["param"] == "who"


def test_a_wallet_finds_its_payable_bills_by_biller_and_consumer_number(biller, world, clock):
    biller_id, api = biller
    world.top_up("a", 50_000)
    november = issue(api, bill_number="N-11")
    october = issue(api, bill_number="N-10", period="2026-10")
    issue(api, bill_number="OTHER", consumer_number="C-9999")
    ok(pay(world, "a", october["id"]), 201)
    _, wallet = world.wallet("a")
    found = ok(wallet.get(f"/v1/bills?biller_id={biller_id}&consumer_number=C-1001"))
    assert [b["id"] for b in found["data"]] == [november["id"]]
    by_number = ok(wallet.get(f"/v1/bills?biller_id={biller_id}&bill_number=N-11"))
    assert [b["id"] for b in by_number["data"]] == [november["id"]]
    error(wallet.get(f"/v1/bills?biller_id={biller_id}"), 400, "invalid_request_error", "missing_parameter")
    paid = ok(api.get("/v1/bills?status=paid"))
    assert [b["id"] for b in paid["data"]] == [october["id"]]
    assert len(ok(api.get("/v1/bills?period=2026-11"))["data"]) == 2


def test_the_biller_reconciles_payments_by_period_with_totals(biller, world, operator):
    biller_id, api = biller
    world.top_up("a", 90_000)
    world.top_up("b", 90_000)
    for n, (wallet, period, amount) in enumerate((("a", "2026-10", 1_000), ("b", "2026-11", 2_000),
                                                  ("a", "2026-11", 3_000))):
        bill = issue(api, bill_number=f"R-{n}", period=period, amount_due=amount)
        ok(pay(world, wallet, bill["id"]), 201)
    listing = ok(api.get("/v1/bill-payments?period=2026-11&limit=1"))
    assert listing["totals"] == [{"currency": "CNY", "count": 2, "amount": 5_000}]
    assert len(listing["data"]) == 1 and listing["has_more"]
    rest = ok(api.get(f"/v1/bill-payments?period=2026-11&after={listing['next_cursor']}"))
    assert {p["amount"] for p in listing["data"] + rest["data"]} == {2_000, 3_000}
    _, wallet_a = world.wallet("a")
    assert ok(wallet_a.get("/v1/bill-payments"))["totals"] == [{"currency": "CNY", "count": 2, "amount": 4_000}]
    assert biller_available(operator, biller_id) == 6_000


def test_paying_by_the_scanned_payload(biller, world, operator):
    biller_id, api = biller
    world.top_up("a", 50_000)
    bill = issue(api, amount_due=10_000, minimum_payment=1_000)
    _, wallet = world.wallet("a")
    payload = ok(wallet.get(f"/v1/bills/{bill['id']}/qr"))["payload"]
    ok(wallet.post("/v1/bill-payments", {"payload": payload, "amount": 4_000}), 201)
    # the printed code still says 10000: paying it now would overpay
    err = error(wallet.post("/v1/bill-payments", {"payload": payload}), 400, "invalid_request_error",
                "overpayment")
    assert "6000 outstanding" in err["message"]
    fresh = ok(wallet.get(f"/v1/bills/{bill['id']}/qr"))["payload"]
    assert ok(wallet.post("/v1/bill-payments", {"payload": fresh}), 201)["bill"]["status"] == "paid"
    damaged = payload[:-6] + ("0" if payload[-6] != "0" else "1") + payload[-5:]
    error(wallet.post("/v1/bill-payments", {"payload": damaged}), 400, "invalid_request_error", "invalid_qr_code")
    shop_code = emvqr.merchant_code(merchant_id=biller_id, merchant_name="Shop", merchant_city="Hangzhou",
                                    mcc="5411")
    error(wallet.post("/v1/bill-payments", {"payload": shop_code}), 400, "invalid_request_error",
          "not_a_bill_code")
    assert biller_available(operator, biller_id) == 10_000


def test_insufficient_funds_leave_the_bill_open(biller, world, nothing_moved):
    _, api = biller
    world.top_up("a", 100)
    bill = issue(api)
    check = nothing_moved()
    error(pay(world, "a", bill["id"]), 402, "payment_error", "insufficient_funds")
    check()
    assert ok(api.get(f"/v1/bills/{bill['id']}"))["status"] == "open"


def test_the_biller_gets_a_bill_paid_event_with_the_payment_and_the_bill(biller, world):
    _, api = biller
    world.top_up("a", 50_000)
    bill = issue(api)
    receipt = ok(pay(world, "a", bill["id"]), 201)
    events = ok(api.get("/v1/events"))["data"]
    assert [e["type"] for e in events] == ["bill.paid"]
    assert events[0]["data"]["id"] == receipt["id"] and events[0]["data"]["bill"]["status"] == "paid"


def test_two_wallets_paying_one_bill_at_once_one_pays_the_other_is_told(app, biller, world, operator, store):
    biller_id, api = biller
    world.top_up("a", 500_000)
    world.top_up("b", 500_000)
    rounds = 8
    outcomes = []
    for n in range(rounds):
        bill = issue(api, bill_number=f"RACE-{n}", amount_due=1_000)
        barrier = threading.Barrier(2)
        answers = {}

        def attempt(name):
            _, wallet = world.wallet(name)
            mine = wallet.as_(wallet.auth)
            mine.client = app.test_client()  # a client of its own per thread
            barrier.wait()
            answers[name] = mine.post(f"/v1/bills/{bill['id']}/payments", {})

        threads = [threading.Thread(target=attempt, args=(name,)) for name in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in answers.values())
        assert statuses == [201, 409], [r.get_json() for r in answers.values()]
        loser = next(r for r in answers.values() if r.status_code == 409)
        assert loser.get_json()["error"]["code"] == "bill_already_paid"
        outcomes.append(statuses)
    assert biller_available(operator, biller_id) == rounds * 1_000
    assert world.available("a") + world.available("b") == 1_000_000 - rounds * 1_000
    books(store)


def test_payment_rules_as_plain_values():
    from datetime import timedelta
    row = {"bill_number": "N", "status": "open", "amount_due": 10_000, "amount_paid": 0,
           "minimum_payment": 2_500, "expires_at": int(START.timestamp()) + 60}
    assert bill_rules.payment_amount(row, None, START) == 10_000
    assert bill_rules.payment_amount(row, 2_500, START) == 2_500
    assert bill_rules.payment_amount({**row, "amount_paid": 9_000}, 1_000, START) == 1_000
    with pytest.raises(Exception) as refused:
        bill_rules.payment_amount(row, None, START + timedelta(seconds=60))
    assert refused.value.code == "bill_expired"


def test_payment_rules_never_overpay_and_close_the_bill_exactly_when_it_is_covered():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gateway.core.errors import DomainError

    @settings(max_examples=300, deadline=None)
    @given(due=st.integers(1, 50_000), minimum_share=st.integers(1, 100),
           asks=st.lists(st.one_of(st.none(), st.integers(1, 60_000)), max_size=12))
    def check(due, minimum_share, asks):
        minimum = max(1, due * minimum_share // 100)
        row = {"bill_number": "N", "status": "open", "amount_due": due, "amount_paid": 0,
               "minimum_payment": minimum, "expires_at": int(START.timestamp()) + 3600}
        for ask in asks:
            outstanding = due - row["amount_paid"]
            try:
                paid = bill_rules.payment_amount(row, ask, START)
            except DomainError as refused:
                if row["status"] == "paid":
                    assert refused.code == "bill_already_paid"
                elif ask > outstanding:
                    assert refused.code == "overpayment"
                else:
                    assert refused.code == "below_minimum_payment" and ask < min(minimum, outstanding)
                continue
            assert row["status"] != "paid" and paid == (outstanding if ask is None else ask)
            assert min(minimum, outstanding) <= paid <= outstanding
            total = row["amount_paid"] + paid
            row = {**row, "amount_paid": total, "status": "paid" if total == due else "partially_paid"}
        assert row["amount_paid"] <= due

    check()
