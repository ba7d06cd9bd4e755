"""POST /v1/sales: a till's sale records, judged alone, cleared like purse fares and stored as
sales; a till's sale uploaded the old way (a tap on route "pos") is stored as a sale too; the
migration moves the old rows."""
from __future__ import annotations

import itertools

from gateway.core import taps
from gateway.store.migrations import MIGRATIONS_DIR, split_statements
from protocol.uplink.records import LEGACY_TILL_ROUTE
from tests.gateway.fixtures import START, ok
from tests.gateway.test_clearing import Rider, revenue, upload
from tests.gateway.test_taps import token_row

_records = itertools.count(1)
SALE_ID = "4255532d30303432-a1b2c3d4-00000001"


def sale_row(rider: Rider, clock, amount: int, sale: str = SALE_ID) -> dict:
    """A purse tap at a till as its journal uploads it: a sale record."""
    tap = rider.tap(clock, fare=amount)
    row = {k: v for k, v in tap.items() if k not in ("route", "stop", "rules_version", "direction")}
    return {**row, "id": f"till-{next(_records):06d}", "sale": sale}


def upload_sales(world, rows, terminal="y"):
    _, api = world.terminal(terminal)
    return ok(api.post("/v1/sales", {"sales": rows}))


def stored(store, table: str) -> int:
    with store.read() as tx:
        return tx.one(f"SELECT COUNT(*) AS n FROM {table}")["n"]


def test_sales_are_cleared_to_the_shop_stored_as_sales_and_counted_once(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    paid = [sale_row(rider, clock, 150), sale_row(rider, clock, 250, sale=SALE_ID[:-1] + "2")]
    refused = {**paid[0], "id": "till-refused", "accepted": False, "reason": "insufficient_balance",
               "amount": None, "receipt": None}
    garbage = {**paid[0], "id": "till-garbage", "route": "12"}  # a sale has no route
    answer = upload_sales(world, paid + [refused, garbage])
    assert answer["object"] == "sale_batch"
    assert [(r["status"], r["clearing"]) for r in answer["results"]] == [
        ("accepted", "posted"), ("accepted", "posted"), ("accepted", None), ("rejected", None)]
    assert answer["results"][3]["reason"].startswith("unknown_field")
    assert revenue(store, world, "y") == 400
    assert (stored(store, "till_sales"), stored(store, "transit_taps")) == (3, 0)

    _, shop = world.merchant("y")
    until = int(START.timestamp()) + 3600
    assert ok(shop.get(f"/v1/sales/revenue?from=0&to={until}"))["data"] == [
        {"currency": "CNY", "sales": 2, "revenue": 400}]  # the refused card is no sale
    assert ok(world.merchant("x")[1].get(f"/v1/sales/revenue?from=0&to={until}"))["data"] == []  # its own only
    assert ok(world.operator.get(f"/v1/sales/revenue?from=0&to={until}"))["data"][0]["revenue"] == 400

    again = upload_sales(world, paid)
    assert [(r["status"], r["clearing"]) for r in again["results"]] == [("duplicate", "posted")] * 2
    assert revenue(store, world, "y") == 400 and stored(store, "till_sales") == 3


def test_a_sale_whose_receipt_does_not_match_is_stored_with_the_refusal_and_moves_no_money(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    row = sale_row(rider, clock, 150)
    answer = upload_sales(world, [{**row, "amount": 151}])
    assert [(r["status"], r["clearing"]) for r in answer["results"]] == [("accepted", "receipt_mismatch")]
    assert revenue(store, world, "y") == 0


def test_the_old_way_a_tap_on_route_pos_is_stored_as_a_sale_beside_the_bus_taps(world, store, clock):
    world.top_up("a", 5000)
    rider = Rider(world)
    rider.load(1000)
    old_sale = {**rider.tap(clock, fare=150), "route": LEGACY_TILL_ROUTE, "stop": SALE_ID}
    rows = [token_row(1), old_sale, token_row(2)]
    answer = upload(world, rows, terminal="y")
    assert answer["object"] == "tap_batch" and (answer["received"], answer["accepted"]) == (3, 3)
    assert [r["id"] for r in answer["results"]] == [r["id"] for r in rows]  # one answer per row, in order
    assert [r["clearing"] for r in answer["results"]] == ["unpriced", "posted", "unpriced"]
    assert (stored(store, "till_sales"), stored(store, "transit_taps")) == (1, 2)
    assert revenue(store, world, "y") == 150
    with store.read() as tx:
        assert [r["route"] for r in taps.ridership(tx, since=0, until=2**32)["data"]] == ["R1"]
        sale = tx.one("SELECT sale_id, amount FROM till_sales")
    assert sale == {"sale_id": SALE_ID, "amount": 150}
    assert [r["status"] for r in upload(world, rows, terminal="y")["results"]] == ["duplicate"] * 3


def test_the_migration_moves_a_tills_taps_to_its_sales(world, store):
    """0019 run over rows stored the old way (its CREATE is IF NOT EXISTS, so it runs again)."""
    terminal_id = world.terminal("y")[0]
    merchant_id = world.merchant("y")[0]
    at = int(START.timestamp())

    def old_rows(tx):
        for tap_id, route, stop in (("t-1", LEGACY_TILL_ROUTE, SALE_ID), ("t-2", "12", "S3")):
            tx.execute("INSERT INTO transit_taps (terminal_id, tap_id, merchant_id, at, kind, accepted, reason, route,"
                       " stop, amount, currency, flags, clearing, received_at) VALUES (:t, :i, :m, :at, 'purse', 1,"
                       " 'paid', :r, :s, 150, 'CNY', '', 'posted', :at)",
                       {"t": terminal_id, "i": tap_id, "m": merchant_id, "at": at, "r": route, "s": stop})
        for statement in split_statements((MIGRATIONS_DIR / "0019_till_sales.sql").read_text()):
            tx.execute(statement)

    store.write(old_rows)
    with store.read() as tx:
        assert tx.query("SELECT tap_id FROM transit_taps") == [{"tap_id": "t-2"}]
        assert tx.query("SELECT record_id, sale_id, amount, clearing FROM till_sales") == [
            {"record_id": "t-1", "sale_id": SALE_ID, "amount": 150, "clearing": "posted"}]
