"""Fare rules: the JSON form and its validation, versions, and the price of one boarding.

The example network and the boarding table are read from docs/fares.md, so the page
and the code cannot drift apart."""
from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocol.currency import money
from protocol.fares import (Discount, FareError, FareRules, RulesError, diff_rules, parse_rules,
                           price_boarding, rules_for, rules_to_dict)

DOC = Path(__file__).resolve().parents[2] / "docs" / "fares.md"


def doc_blocks(kind: str) -> list[str]:
    """The bodies of the ```<kind> fenced blocks of docs/fares.md, in order."""
    return re.findall(rf"^```{kind}\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def example_dict() -> dict:
    return json.loads(doc_blocks("json")[0])


def example_rules() -> FareRules:
    return parse_rules(example_dict())


def boarding_rows() -> list[tuple]:
    rows = []
    for line in doc_blocks("boarding")[0].splitlines():
        route, on, off, klass, _, amount = line.split()[:6]
        rows.append((route, on, None if off == "-" else off, klass, int(amount)))
    return rows


def test_the_documented_example_parses_and_round_trips():
    rules = example_rules()
    assert rules.version == 3
    assert rules.effective_from == datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)
    assert [r.id for r in rules.routes] == ["12", "9", "A1"]
    assert parse_rules(rules_to_dict(rules)) == rules
    assert json.loads(json.dumps(rules_to_dict(rules))) == rules_to_dict(rules)


@pytest.mark.parametrize("route,on,off,klass,amount", boarding_rows())
def test_documented_boarding_fares(route, on, off, klass, amount):
    fare = price_boarding(example_rules(), route, on, off, klass)
    assert fare.amount == amount
    assert sum(line.amount for line in fare.lines) == amount
    assert fare.currency == "CNY" and fare.rules_version == 3


def test_boarding_table_covers_every_product_and_class():
    rows = boarding_rows()
    assert {r[0] for r in rows} == {"12", "9", "A1"}
    assert {r[3] for r in rows} == {"adult", "student", "senior", "child"}


def test_missing_tap_off_is_marked_and_explained():
    rules = example_rules()
    fare = price_boarding(rules, "9", "mk", None, "adult")
    assert fare.missing_tap_off and fare.lines[0].kind == "missing_tap_off"
    assert "Harbour" in fare.lines[0].text
    flat = price_boarding(rules, "12", "rs", None, "adult")
    assert not flat.missing_tap_off and flat.lines[0].kind == "fare"


def test_max_fare_looks_at_every_later_stop_not_only_the_last():
    # a route that goes out to zone 3 and back to zone 1: the highest fare ahead is 3 zones
    data = example_dict()
    data["routes"][1]["stops"] = [{"id": f"s{i}", "name": f"Stop {i}", "zone": z}
                                  for i, z in enumerate([1, 2, 3, 2, 1])]
    rules = parse_rules(data)
    assert price_boarding(rules, "9", "s0", None, "adult").amount == 400
    assert price_boarding(rules, "9", "s3", None, "adult").amount == 300  # zones 2 and 1 remain


@pytest.mark.parametrize("metres,fare", [
    (0, 300), (10000, 300), (10001, 375), (15000, 375), (15001, 450), (20000, 450), (35000, 600), (90000, 600)])
def test_distance_steps_are_counted_per_started_step(metres, fare):
    data = example_dict()
    data["routes"][2]["stops"] = [{"id": "a", "name": "A", "distance_m": 1000},
                                  {"id": "b", "name": "B", "distance_m": 1000 + metres}]
    rules = parse_rules(data)
    assert price_boarding(rules, "A1", "a", "b", "adult").amount == fare
    assert price_boarding(rules, "A1", "b", "a", "adult").amount == fare


@pytest.mark.parametrize("discount,fare,off", [
    (Discount("percent", percent=50), 375, 188),  # 187.5: the half fen goes to the rider
    (Discount("percent", percent=25), 150, 38),  # 37.5
    (Discount("percent", percent=25), 149, 37),  # 37.25
    (Discount("percent", percent=33), 100, 33),
    (Discount("percent", percent=50), 1, 1),  # 0.5 -> 1: a 1-fen fare becomes free
    (Discount("percent", percent=0), 375, 0),
    (Discount("percent", percent=100), 375, 375),
    (Discount("amount", amount=100), 375, 100),
    (Discount("amount", amount=500), 375, 375),  # never below zero
    (Discount("free"), 375, 375),
])
def test_discount_rounding_is_half_up_in_the_riders_favour(discount, fare, off):
    assert discount.off(fare) == off


def test_unknown_route_stop_or_class_is_a_clear_error():
    rules = example_rules()
    with pytest.raises(FareError, match="route 'X'"):
        price_boarding(rules, "X", "rs", None, "adult")
    with pytest.raises(FareError, match="stop 'zz' is not on route '9'"):
        price_boarding(rules, "9", "zz", None, "adult")
    with pytest.raises(FareError, match="stop 'rs' is not on route '9'"):
        price_boarding(rules, "9", "ng", "rs", "adult")
    with pytest.raises(FareError, match="concession class 'veteran'"):
        price_boarding(rules, "9", "ng", "un", "veteran")


def _set(data: dict, path: list, value) -> dict:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize("path,value,error", [
    (["routes", 1, "stops", 2, "zone"], "2", "routes[1].stops[2].zone: must be an integer"),
    (["routes", 1, "stops", 2, "zone"], True, "routes[1].stops[2].zone: must be an integer"),
    (["routes", 1, "stops", 2, "zone"], KeyError, "routes[1].stops[2].zone: must be an integer"),
    (["routes", 2, "stops", 2, "distance_m"], 7000,
     "routes[2].stops[2].distance_m: must not be less than the previous stop's (8000)"),
    (["routes", 0, "product"], "nope", "routes[0].product: must name a product"),
    (["routes", 0, "stops", 1, "id"], "rs", "routes[0].stops[1].id: stop 'rs' appears twice"),
    (["routes", 1, "id"], "12", "routes[1].id: route '12' appears twice"),
    (["routes", 0, "colour"], "red", "routes[0].colour: unknown field"),
    (["routes"], [], "routes: must be a non-empty list"),
    (["products", "city_flat", "amount"], -1, "products.city_flat.amount: must be between 0 and"),
    (["products", "city_flat", "amount"], 2.5, "products.city_flat.amount: must be an integer"),
    (["products", "city_flat", "kind"], "ring", "products.city_flat.kind: must be one of flat, zone, distance"),
    (["products", "line9_zones", "by_zones"], [200, 300], "routes[1].stops: span 3 zones but product"),
    (["products", "line9_zones", "by_zones", 1], None, "products.line9_zones.by_zones[1]: must be an integer"),
    (["products", "line9_zones", "missing_tap_off", "rule"], "guess",
     "products.line9_zones.missing_tap_off.rule: must be one of max_fare, penalty"),
    (["products", "airport_km", "missing_tap_off"], {"rule": "penalty"},
     "products.airport_km.missing_tap_off.amount: is required"),
    (["products", "airport_km", "step_m"], 0, "products.airport_km.step_m: must be between 1 and"),
    (["products", "airport_km", "max"], 100, "products.airport_km.max: must not be below base"),
    (["transfer", "window_minutes"], 0, "transfer.window_minutes: must be between 1 and 1440"),
    (["transfer", "discount"], {"kind": "percent", "percent": 101}, "transfer.discount.percent: must be between"),
    (["transfer", "same_route"], "no", "transfer.same_route: must be true or false"),
    (["concessions", "adult"], KeyError, "concessions: must be an object of concession classes"),
    (["concessions", "Student"], {"discount": None, "caps": None}, "concessions.Student: class name must be"),
    (["concessions", "student", "caps", "day"], -1, "concessions.student.caps.day: must be between"),
    (["concessions", "student", "caps", "month"], 1, "concessions.student.caps.month: unknown field"),
    (["concessions", "child", "discount"], {"kind": "amount"}, "concessions.child.discount.amount: is required"),
    (["currency"], "cny", "currency: must be one of"),
    (["timezone"], "Mars/Olympus", "timezone: must be a time zone name"),
    (["timezone"], "../etc/passwd", "timezone: must be a time zone name"),
    (["effective_from"], "2026-12-01T00:00:00", "effective_from: must carry a UTC offset"),
    (["effective_from"], "tomorrow", "effective_from: must be an ISO 8601 time"),
    (["version"], 0, "version: must be between 1 and"),
    (["version"], "3", "version: must be an integer"),
    (["extra"], 1, "extra: unknown field"),
])
def test_validation_errors_name_the_field(path, value, error):
    with pytest.raises(RulesError) as caught:
        parse_rules(_set(example_dict(), path, value))
    assert error in str(caught.value)
    assert all(isinstance(p, str) and m for p, m in caught.value.errors)


def test_every_error_is_reported_at_once():
    data = _set(example_dict(), ["routes", 1, "stops", 2, "zone"], "2")
    data = _set(data, ["concessions", "student", "caps", "day"], -1)
    with pytest.raises(RulesError) as caught:
        parse_rules(data)
    assert [p for p, _ in caught.value.errors] == ["routes[1].stops[2].zone", "concessions.student.caps.day"]


@pytest.mark.parametrize("data", [None, [], "rules", 3])
def test_a_non_object_is_rejected(data):
    with pytest.raises(RulesError, match="fare rules: must be an object"):
        parse_rules(data)


def test_transfer_and_caps_are_optional():
    data = _set(example_dict(), ["transfer"], KeyError)
    data["concessions"] = {"adult": {"discount": None, "caps": None}}
    rules = parse_rules(data)
    assert rules.transfer is None and rules.concessions["adult"].caps.day is None
    assert parse_rules(rules_to_dict(rules)) == rules


def test_effective_from_is_kept_in_utc():
    data = _set(example_dict(), ["effective_from"], "2026-12-01T00:00:00Z")
    assert rules_to_dict(parse_rules(data))["effective_from"] == "2026-12-01T00:00:00Z"
    assert rules_to_dict(example_rules())["effective_from"] == "2026-11-30T16:00:00Z"


def test_diff_names_what_changed():
    old = example_rules()
    data = _set(example_dict(), ["products", "city_flat", "amount"], 250)
    data = _set(data, ["version"], 4)
    data["routes"][1]["stops"].append({"id": "pt", "name": "Port", "zone": 3})
    new = parse_rules(data)
    changes = diff_rules(old, new)
    assert "version: 3 -> 4" in changes
    assert "products.city_flat.amount: 200 -> 250" in changes
    assert any(c.startswith("routes[1].stops:") for c in changes)
    assert diff_rules(old, old) == []


def test_rules_for_prefers_the_named_version_then_the_one_in_effect():
    v3 = example_rules()
    v4 = parse_rules(_set(_set(example_dict(), ["version"], 4), ["effective_from"], "2026-12-10T00:00:00+08:00"))
    book = [v4, v3]
    before = datetime(2026, 12, 9, 12, 0, tzinfo=timezone.utc)
    after = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)
    assert rules_for(book, None, before).version == 3
    assert rules_for(book, None, after).version == 4
    assert rules_for(book, 3, after).version == 3  # the version the validator used
    assert rules_for(book, 2, after).version == 4  # no longer known: the one in effect
    with pytest.raises(FareError, match="no fare rules in effect"):
        rules_for(book, None, datetime(2026, 11, 1, tzinfo=timezone.utc))


def test_local_day_and_week_follow_the_operators_time_zone():
    rules = example_rules()
    sunday_utc = datetime(2026, 12, 13, 16, 30, tzinfo=timezone.utc)  # Monday 00:30 in Shanghai
    assert rules.local_day(sunday_utc).isoformat() == "2026-12-14"
    assert rules.week_start(sunday_utc).isoformat() == "2026-12-14"
    assert rules.week_start(sunday_utc - timedelta(hours=1)).isoformat() == "2026-12-07"


def test_money_is_written_with_the_currencys_minor_unit():
    assert money(187, "CNY") == "1.87 CNY"
    assert money(-100, "CNY") == "-1.00 CNY"
    assert money(300, "JPY") == "300 JPY"
    assert money(1500, "KWD") == "1.500 KWD"


def test_money_refuses_a_currency_it_does_not_know_rather_than_guess_its_decimals():
    with pytest.raises(ValueError, match="ISO 4217"):
        money(150, "XYZ")


def test_rules_may_be_in_any_iso_4217_currency():
    assert parse_rules(_set(example_dict(), ["currency"], "KWD")).currency == "KWD"
