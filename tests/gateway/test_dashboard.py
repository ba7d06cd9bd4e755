"""gateway.core.dashboard over a store seeded through the API: every figure the operator and the
wallet pages show, checked against what the API, clearing and the ledger say."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from gateway.core import clearing, dashboard, ledger
from protocol import tokens
from tests.gateway.fixtures import START, ok
from tests.gateway.test_clearing import Rider, revenue, upload

SHANGHAI = dashboard.zone("Asia/Shanghai")
T0 = int(START.timestamp())  # 2026-11-27 09:00 UTC, 17:00 in Shanghai
DAY = date(2026, 11, 27)


def token(n: int) -> str:
    return tokens.uid_token(b"k" * 32, bytes([4, n, 1, 2, 3, 4, 5]))


def tap_row(n: int, *, at: int, rider: int = 1, route: str = "R1", accepted: bool = True,
            reason: str = "token") -> dict:
    return {"id": f"dash-{n:06d}", "at": at, "kind": "uid", "accepted": accepted, "reason": reason,
            "route": route, "stop": "S1", "token": token(rider)}


@pytest.fixture
def biller(operator):
    made = ok(operator.post("/v1/billers", {"name": "City Water", "city": "Hangzhou"}), 201)
    return made["id"], operator.as_(made["api_key"])


def issue(biller_api, consumer: str = "C-1001", amount: int = 12_345) -> dict:
    return ok(biller_api.post("/v1/bills", {"consumer_number": consumer, "period": "2026-11",
                                            "amount_due": amount, "currency": "CNY",
                                            "due_date": "2026-12-10"}), 201)


def overview(store, clock, **kw):
    with store.read() as tx:
        return dashboard.overview(tx, day=DAY, tz=SHANGHAI, now=clock(), **kw)


# -- time --------------------------------------------------------------------------------------

def test_a_local_day_has_its_own_bounds_and_hours():
    since, until = dashboard.day_bounds(DAY, SHANGHAI)
    assert datetime.fromtimestamp(since, timezone.utc) == datetime(2026, 11, 26, 16, tzinfo=timezone.utc)
    assert until - since == 24 * 3600
    berlin = dashboard.zone("Europe/Berlin")
    short = dashboard.day_bounds(date(2026, 3, 29), berlin)  # clocks go forward: 23 hours
    assert short[1] - short[0] == 23 * 3600


def test_an_unknown_zone_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        dashboard.zone("Mars/Olympus")
    with pytest.raises(ValueError):
        dashboard.zone("")


def test_a_gateway_with_nothing_yet_shows_empty_panels_and_balanced_books(store, clock, world):
    view = overview(store, clock)
    assert view["any_taps_ever"] is False
    assert view["taps"] == {"taps": 0, "accepted": 0, "denied": 0, "riders": 0, "denied_reasons": []}
    assert [h["taps"] for h in view["hours"]] == [0] * 24
    assert view["hours"][0]["label"] == "00:00" and view["hours"][-1]["label"] == "23:00"
    assert view["routes"] == [] and view["fare_revenue"] == {}
    assert view["validators"]["terminals"] == [] and view["validators"]["reference"] is None
    assert view["validators"]["never_uploaded"] == 2  # the world's two tills
    assert view["billers"] == [] and view["deny_list"] == {"version": 0, "entries": []}
    with store.read() as tx:
        checked = dashboard.ledger_check(tx)
    assert checked["ok"] and checked["problems"] == [] and checked["transfers"] == 0
    assert all(t["net"] == t["debits"] == 0 for t in checked["totals"])
    with store.read() as tx:
        assert dashboard.default_day(tx, now=clock(), tz=SHANGHAI) == DAY


# -- transit -----------------------------------------------------------------------------------

def test_taps_riders_refusals_and_hours_of_a_day(world, store, clock):
    rows = [tap_row(1, at=T0 - 3 * 3600, rider=1),             # 14:00 local
            tap_row(2, at=T0 - 3 * 3600 + 60, rider=2, route="R2"),
            tap_row(3, at=T0 + 120, rider=1),                  # 17:02 local, same rider again
            tap_row(4, at=T0 + 180, rider=3, accepted=False, reason="denied_card"),
            tap_row(5, at=T0 + 240, rider=4, accepted=False, reason="denied_card"),
            tap_row(6, at=T0 + 300, rider=5, accepted=False, reason="expired_card"),
            tap_row(7, at=T0 - 18 * 3600, rider=6)]            # the day before in Shanghai
    assert upload(world, rows)["accepted"] == 7
    view = overview(store, clock)
    assert view["taps"] == {"taps": 6, "accepted": 3, "denied": 3, "riders": 2,
                            "denied_reasons": [("denied_card", 2), ("expired_card", 1)]}
    per_hour = {h["label"]: (h["taps"], h["accepted"]) for h in view["hours"] if h["taps"]}
    assert per_hour == {"14:00": (2, 2), "17:00": (4, 1)}
    assert sum(h["taps"] for h in view["hours"]) == view["taps"]["taps"]
    routes = {r["route"]: r for r in view["routes"]}
    assert (routes["R1"]["taps"], routes["R1"]["accepted"], routes["R1"]["token_taps"]) == (5, 2, 2)
    assert (routes["R2"]["taps"], routes["R2"]["revenue"]) == (1, 0)
    assert view["fare_revenue"] == {}  # token taps are priced later, not counted as revenue here
    with store.read() as tx:
        assert dashboard.default_day(tx, now=clock(), tz=SHANGHAI) == DAY


def test_purse_fares_cleared_are_the_revenue_per_route(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    answer = upload(world, [rider.tap(clock, fare=200) for _ in range(3)])
    assert [r["clearing"] for r in answer["results"]] == ["posted"] * 3
    view = overview(store, clock)
    assert view["fare_revenue"] == {"CNY": revenue(store, world)} == {"CNY": 600}
    (r1,) = view["routes"]
    assert (r1["route"], r1["revenue"], r1["currency"], r1["accepted"]) == ("R1", 600, "CNY", 3)
    assert view["taps"]["riders"] == 1  # one card


def test_validators_are_online_when_they_uploaded_close_to_the_latest_upload(world, store, clock):
    upload(world, [tap_row(1, at=T0)], terminal="x")
    clock.advance(30 * 60)
    upload(world, [tap_row(2, at=T0 + 1800), tap_row(3, at=T0 + 1860)], terminal="y")
    with store.read() as tx:
        seen = dashboard.validators(tx, online_minutes=15)
        wide = dashboard.validators(tx, online_minutes=31)
    by_id = {t["id"]: t for t in seen["terminals"]}
    x, y = world.terminal("x")[0], world.terminal("y")[0]
    assert (by_id[x]["online"], by_id[y]["online"]) == (False, True)
    assert (by_id[x]["taps"], by_id[y]["taps"]) == (1, 2)
    assert by_id[y]["last_upload"] == seen["reference"] == T0 + 1800
    assert by_id[x]["last_upload"] == T0 and by_id[x]["merchant_name"] == "Shop x"
    assert (seen["online"], seen["offline"], seen["never_uploaded"]) == (1, 1, 0)
    assert (wide["online"], wide["offline"]) == (2, 0)


# -- bills, payments, deny-list, books -------------------------------------------------------------

def test_bills_issued_and_paid_per_biller(world, store, clock, biller, operator):
    biller_id, api = biller
    world.top_up("a", 50_000)
    first, _ = issue(api, amount=12_345), issue(api, consumer="C-2002", amount=3_000)
    ok(world.wallet("a")[1].post(f"/v1/bills/{first['id']}/payments", {}), 201)
    idle = ok(operator.post("/v1/billers", {"name": "Gas Works", "city": "Hangzhou"}), 201)
    with store.read() as tx:
        rows = {r["biller_id"]: r for r in dashboard.bills_per_biller(tx, now=clock())}
    water = rows[biller_id]
    assert (water["issued"], water["paid"], water["issued_amount"]) == (2, 1, 15_345)
    assert (water["paid_amount"], water["outstanding"], water["currency"]) == (12_345, 3_000, "CNY")
    assert rows[idle["id"]]["issued"] == 0 and rows[idle["id"]]["name"] == "Gas Works"
    view = overview(store, clock)
    assert view["bill_payments"] == {"CNY": {"count": 1, "amount": 12_345}}


def test_shop_payments_of_the_day(world, store, clock):
    world.top_up("a", 10_000)
    world.pay("a", "x", 1_250)
    world.pay("a", "y", 750)
    assert overview(store, clock)["shop"] == {"CNY": {"count": 2, "amount": 2_000, "refunded": 0}}
    clock.advance(24 * 3600)  # a payment the next day is not this day's
    world.pay("a", "x", 100)
    assert overview(store, clock)["shop"]["CNY"]["count"] == 2


def test_the_deny_list_with_reasons_newest_first(operator, store, clock):
    for n, reason in ((1, "reported stolen"), (2, "chargeback")):
        ok(operator.post("/v1/issuer/deny-list", {"entry": token(n), "kind": "token", "reason": reason}), 201)
    with store.read() as tx:
        listed = dashboard.deny_list(tx)
    assert listed["version"] == 2
    assert [(e["entry"], e["reason"], e["source"]) for e in listed["entries"]] == [
        (token(2), "chargeback", "operator"), (token(1), "reported stolen", "operator")]
    assert all(e["created_at"] == T0 for e in listed["entries"])


def test_the_ledger_check_reports_totals_and_problems(world, store):
    world.top_up("a", 4_000)
    world.pay("a", "x", 1_000)
    with store.read() as tx:
        good = dashboard.ledger_check(tx)
    assert good["ok"] and good["transfers"] == 2
    (cny,) = good["totals"]
    assert (cny["currency"], cny["net"], cny["debits"], cny["credits"]) == ("CNY", 0, 5_000, 5_000)
    with store.transaction() as tx:  # a balance edited behind the ledger's back
        tx.execute("UPDATE ledger_accounts SET credits_posted = credits_posted + 1"
                   " WHERE id = (SELECT account_id FROM wallets ORDER BY id LIMIT 1)")
    with store.read() as tx:
        bad = dashboard.ledger_check(tx)
        report = ledger.check(tx)
    assert not bad["ok"]
    assert {p["code"] for p in bad["problems"]} == {p.code for p in report.problems} >= {"books_unbalanced"}


# -- the wallet page -------------------------------------------------------------------------------

def test_statement_lines_in_plain_words(world, store, clock, biller):
    _, api = biller
    wallet_id, wallet_api = world.wallet("a")
    world.top_up("a", 20_000)
    world.pay("a", "x", 1_500)
    bill = issue(api)
    ok(wallet_api.post(f"/v1/bills/{bill['id']}/payments", {}), 201)
    with store.read() as tx:
        wallet = dashboard.wallet_row(tx, wallet_id)
        lines = dashboard.wallet_activity(tx, wallet)
        paid = dashboard.paid_bills(tx, wallet_id, now=clock())
        to_pay = dashboard.bills_to_pay(tx, wallet_id, biller_id=bill["biller_id"], consumer_number="C-1001",
                                        now=clock())
    assert [(line["description"], line["change"]) for line in lines] == [
        (f"Bill paid to City Water (bill {bill['bill_number']})", -12_345),
        ("Paid Shop x", -1_500),
        ("Top-up", 20_000)]
    assert lines[0]["balance_after"] == 20_000 - 1_500 - 12_345
    assert [(p["bill_id"], p["bill"]["status"]) for p in paid] == [(bill["id"], "paid")]
    assert to_pay == []  # nothing left to pay


def test_describe_is_plain_words_for_every_kind_of_movement():
    assert dashboard.describe("refund", "Shop x") == "Refund from Shop x"
    assert dashboard.describe("payment", None) == "Paid a merchant"
    assert dashboard.describe("purse_load", None) == "Moved to your travel card"
    assert dashboard.describe("new_kind_of_thing", None) == "New kind of thing"


def test_a_wallet_is_found_by_its_credential_only(world, store):
    wallet_id, api = world.wallet("a")
    with store.read() as tx:
        assert dashboard.wallet_by_credential(tx, api.auth)["id"] == wallet_id
        assert dashboard.wallet_by_credential(tx, api.auth + "x") is None
        assert dashboard.wallet_by_credential(tx, "sk_" + api.auth[3:]) is None
        assert dashboard.wallet_by_credential(tx, None) is None


def test_revenue_by_currency_adds_per_currency_and_skips_unvalued_rows():
    rows = [{"currency": "CNY", "revenue": 200}, {"currency": None, "revenue": 0},
            {"currency": "CNY", "revenue": 50}, {"currency": "HKD", "revenue": 7}]
    assert dashboard.revenue_by_currency(rows) == {"CNY": 250, "HKD": 7}


def test_clearing_revenue_account_is_where_fares_go(world, store, clock):
    # The dashboard's revenue comes from ridership; it must equal the ledger's revenue account.
    world.top_up("a", 3000)
    rider = Rider(world)
    rider.load(900)
    upload(world, [rider.tap(clock, fare=300), rider.tap(clock, fare=300)])
    merchant_id, _ = world.merchant("x")
    with store.read() as tx:
        account = ledger.get_account(tx, clearing.revenue_account_id(merchant_id, "CNY"))
        routes = dashboard.routes(dashboard.ridership(tx, since=T0 - 3600, until=T0 + 3600))
    assert sum(r["revenue"] for r in routes) == account["balance"] == 600


def test_a_wallet_sees_the_bus_taps_of_its_own_purse_card_only(world, store, clock):
    world.top_up("a", 3000)
    rider = Rider(world)
    rider.load(1000)
    upload(world, [rider.tap(clock, fare=200), rider.tap(clock, fare=250)])
    upload(world, [tap_row(1, at=T0, rider=1)])  # a UID tap: linked to no wallet
    with store.read() as tx:
        mine = dashboard.wallet_trips(tx, world.wallet("a")[0])
        theirs = dashboard.wallet_trips(tx, world.wallet("b")[0])
    assert [(t["amount"], t["route"], t["accepted"]) for t in mine] == [(250, "R1", 1), (200, "R1", 1)]
    assert theirs == []
