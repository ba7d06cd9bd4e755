"""The dashboard over a pilot day as the demo makes it: a shop till's purse sales kept apart from
ridership, token trips charged beside purse fares per route, and a pointer to the day of the
latest bills and shop payments when it is not the day on screen."""
from __future__ import annotations

from datetime import date

from gateway.core import dashboard
from protocol import tokens
from protocol.uplink.records import LEGACY_TILL_ROUTE
from tests.gateway.fixtures import ok
from tests.gateway.test_card_links import KEY, PAN_TOKEN
from tests.gateway.test_clearing import Rider, upload
from tests.gateway.test_dashboard import SHANGHAI, T0, tap_row
from tests.gateway.test_fare_charges import DAY, link, publish, ride, run

UNLINKED = tokens.pan_token(KEY, "5555555555554444")
TODAY = date(2026, 11, 27)  # T0 is 17:00 in Shanghai on this day
YESTERDAY = date(2026, 11, 26)


def overview(store, clock, day):
    with store.read() as tx:
        return dashboard.overview(tx, day=day, tz=SHANGHAI, now=clock())


def till_sale(world, clock, rider, n: int, amount: int):
    """A purse sale as tills uploaded them before sale records (POST /v1/taps, route "pos",
    the sale id as the stop): the gateway stores it as the sale it is."""
    row = rider.tap(clock, fare=amount)
    return {**row, "route": LEGACY_TILL_ROUTE, "stop": f"sale-{n}"}


def test_a_tills_purse_sales_are_shop_payments_not_ridership(world, store, clock):
    world.top_up("b", 5000)
    shop_rider = Rider(world, "b")
    shop_rider.load(1000)
    upload(world, [tap_row(1, at=T0 - 26 * 3600, rider=1), tap_row(2, at=T0 - 25 * 3600, rider=2)], terminal="x")
    sales = [till_sale(world, clock, shop_rider, n, 150) for n in range(3)]
    answer = upload(world, sales, terminal="y")
    assert [r["clearing"] for r in answer["results"]] == ["posted"] * 3
    today = overview(store, clock, TODAY)
    assert today["taps"]["taps"] == 0 and today["routes"] == []
    assert sum(h["taps"] for h in today["hours"]) == 0
    assert today["till_sales"] == {"CNY": {"count": 3, "amount": 450}}
    assert today["fare_revenue"] == {}
    till = {t["id"]: t for t in today["validators"]["terminals"]}
    assert till[world.terminal("y")[0]]["till"] is True and till[world.terminal("x")[0]]["till"] is False
    with store.read() as tx:  # the dashboard opens on the bus day, not the day of the latest sale
        assert dashboard.default_day(tx, now=clock(), tz=SHANGHAI) == YESTERDAY
        assert dashboard.latest_activity(tx, SHANGHAI) == {"bills": None, "shop": TODAY}
    bus_day = overview(store, clock, YESTERDAY)
    assert bus_day["taps"]["taps"] == 2 and bus_day["till_sales"] == {}


def test_with_no_transit_tap_the_dashboard_opens_on_today(world, store, clock):
    rider = Rider(world)
    world.top_up("a", 5000)
    rider.load(1000)
    clock.advance(-3 * 86400)  # the sale happened three days before now
    upload(world, [till_sale(world, clock, rider, 1, 100)], terminal="y")
    clock.advance(3 * 86400)
    with store.read() as tx:
        assert dashboard.default_day(tx, now=clock(), tz=SHANGHAI) == TODAY


def test_revenue_per_route_is_purse_cleared_plus_token_charged_and_shows_unpaid_apart(world, config, store, clock):
    publish(config)
    world.top_up("a", 5000)
    purse = Rider(world)
    purse.load(1000)
    upload(world, [{**purse.tap(clock, fare=200), "route": "12"}])
    link(world)  # the PAN token's trips are charged to wallet a
    ride(world, PAN_TOKEN, ("07:00", "12"), ("12:00", "7"))
    ride(world, UNLINKED, ("08:00", "12"))  # no linked wallet: a debt
    run(world)
    view = overview(store, clock, date.fromisoformat(DAY))
    routes = {r["route"]: r for r in view["routes"]}
    assert (routes["12"]["purse"], routes["12"]["token"], routes["12"]["unpaid"]) == (200, 200, 200)
    assert routes["12"]["revenue"] == 400 and routes["12"]["token_trips"] == 2
    assert (routes["7"]["purse"], routes["7"]["token"], routes["7"]["revenue"]) == (0, 200, 200)
    assert view["fare_revenue"] == {"CNY": 600}
    assert view["route_totals"] == {"CNY": {"purse": 200, "token": 400, "unpaid": 200, "revenue": 600}}
    by_route = ok(world.operator.get(f"/v1/fare-charges?day={DAY}"))["data"]
    assert sum(r["collected"] for r in by_route) == view["route_totals"]["CNY"]["token"]


def test_routes_sum_token_and_purse_rows_pure():
    rows = [{"route": "R1", "taps": 3, "accepted": 3, "token_taps": 1, "purse_revenue": 400, "currency": "CNY"}]
    charges = [{"route": "R1", "currency": "CNY", "trips": 1, "collected": 200, "unpaid": 0},
               {"route": "R9", "currency": "CNY", "trips": 2, "collected": 0, "unpaid": 300}]
    r1, r9 = dashboard.routes(rows, charges)
    assert (r1["purse"], r1["token"], r1["revenue"]) == (400, 200, 600)
    assert (r9["taps"], r9["revenue"], r9["unpaid"]) == (0, 0, 300)
    assert dashboard.route_totals([r1, r9]) == {"CNY": {"purse": 400, "token": 200, "unpaid": 300, "revenue": 600}}


def test_the_page_opens_on_the_bus_day_labels_the_till_and_points_to_the_shop_day(world, store, clock, client,
                                                                                   config):
    from tests.gateway.test_dashboard_web import figure, sign_in_operator, text

    world.top_up("b", 5000)
    shop_rider = Rider(world, "b")
    shop_rider.load(1000)
    upload(world, [tap_row(1, at=T0 - 26 * 3600, rider=1)], terminal="x")
    upload(world, [till_sale(world, clock, shop_rider, 1, 150)], terminal="y")
    sign_in_operator(client, config)
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Thursday 26 November 2026" in html
    assert figure(html, "taps") == ["1"] and figure(html, "till-sales") == ["none"]
    latest = text(html.split('id="latest-activity"', 1)[1].split("</p>", 1)[0])
    assert "shop payments last on 2026-11-27" in latest
    assert 'data-till="1"' in html and "(till)" in text(html)
    today = client.get("/dashboard?day=2026-11-27").get_data(as_text=True)
    assert figure(today, "taps") == ["0"] and figure(today, "till-sales") == ["1", "·", "1.50", "CNY"]
    assert 'id="latest-activity"' not in today  # the shop's day is the day on screen
