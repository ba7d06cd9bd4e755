"""Taps to trips to charges: pairing, repeats, orphans, transfers, caps and versions.

The worked examples of docs/fares.md are run here as they are written."""
from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gateway.core.trips import Charge, Tap, build_trips, price_trips
from protocol.fares import FareError, parse_rules
from tests.protocol.test_fares import _set, doc_blocks, example_dict, example_rules

SHANGHAI = ZoneInfo("Asia/Shanghai")
_ids = itertools.count()


def local(day: int, hh: int, mm: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=SHANGHAI)


def tap(at: datetime, kind: str, route: str, stop: str, token: str = "pan_rider", version=None, id=None) -> Tap:
    return Tap(id or f"t{next(_ids):05d}", token, at, kind, route, stop, version)


def charges_of(taps, concession="adult", rules=None, **kw) -> list[Charge]:
    return price_trips(rules or example_rules(), build_trips(taps), concession, **kw)


def amounts(taps, concession="adult", rules=None, **kw) -> list[int]:
    return [c.amount for c in charges_of(taps, concession, rules, **kw)]


# ------------------------------------------------------------------ the documented examples

def parse_example(block: str):
    """(concession, already-charged keywords, taps, expected charges) of one ```trips block."""
    concession, kw, taps, expected = "adult", {}, [], []
    for line in block.splitlines():
        if ":" in line.split()[0]:
            key, value = (part.strip() for part in line.split(":", 1))
            if key == "concession":
                concession = value
            else:
                kw[key] = int(value)
            continue
        day, time, kind, route, stop, *rest = line.split()
        at = datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=SHANGHAI)
        taps.append(tap(at, kind, route, stop))
        if rest and rest[0] == "charge":
            expected.append(int(rest[1]))
    return concession, kw, taps, expected


EXAMPLES = doc_blocks("trips")


def test_the_page_has_its_examples():
    assert len(EXAMPLES) == 5


@pytest.mark.parametrize("block", EXAMPLES)
def test_documented_trip_examples(block):
    concession, kw, taps, expected = parse_example(block)
    charges = charges_of(taps, concession, **kw)
    assert [c.amount for c in charges] == expected
    for c in charges:
        assert sum(line.amount for line in c.lines) == c.amount
    # any arrival order gives the same charges
    shuffled = taps[:]
    random.Random(7).shuffle(shuffled)
    assert [c.amount for c in charges_of(shuffled, concession, **kw)] == expected


# ------------------------------------------------------------------ building trips

def test_tap_on_then_tap_off_is_one_complete_trip():
    on, off = tap(local(7, 8), "on", "9", "ng"), tap(local(7, 8, 20), "off", "9", "un")
    [trip] = build_trips([off, on])
    assert (trip.status, trip.on, trip.off) == ("complete", on, off)


def test_a_tap_on_after_a_tap_on_closes_the_first_as_missing_tap_off():
    a, b = tap(local(7, 8), "on", "9", "ng"), tap(local(7, 9), "on", "9", "un")
    first, second = build_trips([a, b])
    assert (first.status, first.on, first.off) == ("missing_tap_off", a, None)
    assert (second.status, second.on) == ("open", b)


def test_the_last_tap_on_is_open_until_now_is_past_the_longest_trip():
    a = tap(local(7, 8), "on", "9", "ng")
    assert build_trips([a])[0].status == "open"
    assert build_trips([a], now=local(7, 10, 59))[0].status == "open"
    assert build_trips([a], now=local(7, 11))[0].status == "missing_tap_off"


def test_a_tap_off_with_no_tap_on_is_an_orphan():
    off = tap(local(7, 8), "off", "9", "un")
    [trip] = build_trips([off])
    assert (trip.status, trip.on, trip.off) == ("orphan_tap_off", None, off)
    [charge] = charges_of([off])
    assert (charge.amount, charge.flag) == (0, "orphan_tap_off")
    assert "not charged" in charge.statement()


def test_a_tap_off_on_another_route_or_too_late_does_not_end_the_trip():
    on = tap(local(7, 8), "on", "9", "ng")
    for off in (tap(local(7, 8, 30), "off", "A1", "ex"), tap(local(7, 11, 1), "off", "9", "un")):
        first, second = build_trips([on, off])
        assert (first.status, second.status) == ("missing_tap_off", "orphan_tap_off")


def test_a_repeated_tap_at_the_same_stop_is_one_tap():
    a = tap(local(7, 8), "on", "9", "ng")
    again = tap(local(7, 8, 2), "on", "9", "ng")
    later = tap(local(7, 8, 3), "on", "9", "ng")  # 3 minutes after the first: a new tap
    off, off_again = tap(local(7, 8, 30), "off", "9", "un"), tap(local(7, 8, 31), "off", "9", "un")
    trips = build_trips([a, again, later, off, off_again])
    assert [(t.status, t.on, t.off, t.repeats) for t in trips] == [
        ("missing_tap_off", a, None, (again,)), ("complete", later, off, (off_again,))]


def test_the_same_tap_delivered_twice_counts_once_but_a_reused_id_is_refused():
    a = tap(local(7, 8), "on", "12", "rs", id="dup")
    assert len(build_trips([a, a])) == 1
    with pytest.raises(ValueError, match="'dup'"):
        build_trips([a, tap(local(7, 9), "on", "12", "ps", id="dup")])


def test_riders_are_paired_separately():
    a_on, b_on = tap(local(7, 8), "on", "9", "ng", "pan_a"), tap(local(7, 8, 5), "on", "9", "ng", "pan_b")
    a_off = tap(local(7, 8, 30), "off", "9", "hb", "pan_a")
    trips = build_trips([b_on, a_off, a_on])
    assert [(t.token, t.status) for t in trips] == [("pan_a", "complete"), ("pan_b", "open")]
    with pytest.raises(ValueError, match="one rider"):
        price_trips(example_rules(), trips, "adult")


@pytest.mark.parametrize("fields,error", [
    (dict(at=datetime(2026, 12, 7, 8)), "timezone-aware"),
    (dict(kind="in"), "'on' or 'off'"),
    (dict(token=""), "token"),
    (dict(rules_version=0), "rules_version"),
    (dict(rules_version=True), "rules_version"),
])
def test_bad_taps_are_refused_with_a_clear_message(fields, error):
    base = dict(id="t", token="pan_x", at=local(7, 8), kind="on", route="9", stop="ng")
    with pytest.raises(ValueError, match=error):
        Tap(**{**base, **fields})


# ------------------------------------------------------------------ fares and missing tap-offs

def test_flat_zone_and_distance_trips():
    taps = [tap(local(7, 6), "on", "12", "rs"),
            tap(local(7, 8), "on", "9", "ng"), tap(local(7, 8, 20), "off", "9", "un"),
            tap(local(7, 10), "on", "A1", "ch"), tap(local(7, 10, 30), "off", "A1", "tp")]
    assert amounts(taps) == [200, 300, 375]


def test_a_flat_route_needs_no_tap_off():
    # the last tap-on is open, but a flat fare is due at once; a missing tap-off costs nothing extra
    assert amounts([tap(local(7, 6), "on", "12", "rs")]) == [200]
    assert amounts([tap(local(7, 6), "on", "12", "rs"), tap(local(7, 9), "on", "12", "ps")]) == [200, 200]


def test_missing_tap_off_under_max_fare_and_under_penalty():
    # on separate days, so that no cap is reached
    taps = [tap(local(7, 6), "on", "9", "un"), tap(local(8, 8), "on", "A1", "tp"), tap(local(9, 11), "on", "12", "rs")]
    charges = charges_of(taps)
    assert [c.amount for c in charges] == [300, 1000, 200]  # University to Harbour: 2 zones; the penalty
    assert [c.lines[0].kind for c in charges] == ["missing_tap_off", "missing_tap_off", "fare"]
    assert "No tap-off" in charges[0].statement()


def test_an_open_trip_on_a_tap_off_route_is_not_charged_yet():
    [charge] = charges_of([tap(local(7, 8), "on", "9", "ng")])
    assert (charge.amount, charge.flag) == (0, "open")
    [charge] = price_trips(example_rules(), build_trips([tap(local(7, 8), "on", "9", "ng")], now=local(7, 12)), "adult")
    assert (charge.amount, charge.flag) == (400, None)


def test_a_stop_the_rules_do_not_know_is_held_for_review_not_dropped():
    taps = [tap(local(7, 8), "on", "9", "ng"), tap(local(7, 8, 30), "off", "9", "nowhere"),
            tap(local(7, 9), "on", "99", "x"), tap(local(7, 12), "on", "12", "rs")]
    charges = charges_of(taps)
    assert [(c.amount, c.flag) for c in charges] == [(0, "unpriced"), (0, "unpriced"), (200, None)]
    assert "nowhere" in charges[0].statement() and "'99'" in charges[1].statement()


def test_concessions_apply_to_every_trip():
    taps = [tap(local(7, 8), "on", "A1", "ch"), tap(local(7, 8, 40), "off", "A1", "tp")]
    assert amounts(taps, "adult") == [375]
    assert amounts(taps, "student") == [187]  # 187.5 off rounded up: the rider pays 187
    assert amounts(taps, "senior") == [0]
    assert amounts(taps, "child") == [275]
    with pytest.raises(FareError, match="veteran"):
        charges_of(taps, "veteran")


# ------------------------------------------------------------------ transfers

def _transfer_rules(**transfer):
    data = example_dict()
    data["transfer"].update(transfer)
    return parse_rules(data)


@pytest.mark.parametrize("minutes,expected", [(0, 100), (60, 100), (90, 100), (91, 200)])
def test_transfer_window_is_inclusive(minutes, expected):
    taps = [tap(local(7, 8), "on", "12", "rs"), tap(local(7, 8) + timedelta(minutes=minutes, seconds=0),
                                                   "on", "9", "ng"),
            tap(local(7, 8) + timedelta(minutes=minutes + 10), "off", "9", "mk")]
    assert amounts(taps) == [200, expected]


def test_the_window_runs_from_the_previous_boarding_not_the_first():
    taps = [tap(local(7, 8), "on", "12", "rs"),
            tap(local(7, 9), "on", "9", "ng"), tap(local(7, 9, 10), "off", "9", "mk"),
            tap(local(7, 10, 20), "on", "12", "ps")]  # 140 min after the first, 80 after the second
    charges = charges_of(taps)
    assert [(c.amount, c.transfer_number) for c in charges] == [(200, 0), (100, 1), (100, 2)]


def test_at_most_k_transfers_in_a_row_then_a_new_run():
    routes = ["12", "9", "12", "9", "12"]
    taps = []
    for i, route in enumerate(routes):
        stop = "rs" if route == "12" else "ng"
        taps.append(tap(local(7, 8, 10 * i), "on", route, stop))
        if route == "9":
            taps.append(tap(local(7, 8, 10 * i + 5), "off", route, "mk"))
    assert [c.transfer_number for c in charges_of(taps)] == [0, 1, 2, 0, 1]
    assert amounts(taps) == [200, 100, 100, 200, 100]
    assert [c.transfer_number for c in charges_of(taps, rules=_transfer_rules(max_transfers=1))] == [0, 1, 0, 1, 0]


def test_same_route_boardings_are_transfers_only_if_the_rules_say_so():
    taps = [tap(local(7, 8), "on", "12", "rs"), tap(local(7, 8, 30), "on", "12", "ps")]
    assert amounts(taps) == [200, 200]
    assert amounts(taps, rules=_transfer_rules(same_route=True)) == [200, 100]


@pytest.mark.parametrize("discount,expected", [
    ({"kind": "free"}, 0), ({"kind": "percent", "percent": 25}, 281), ({"kind": "amount", "amount": 500}, 0)])
def test_transfer_discounts(discount, expected):
    # 375 less 25% = 375 - 94 (93.75 rounded half up) = 281
    taps = [tap(local(7, 8), "on", "12", "rs"),
            tap(local(7, 8, 30), "on", "A1", "ch"), tap(local(7, 9), "off", "A1", "tp")]
    assert amounts(taps, rules=_transfer_rules(discount=discount)) == [200, expected]


def test_no_transfer_rule_means_full_fares():
    data = _set(example_dict(), ["transfer"], None)
    taps = [tap(local(7, 8), "on", "12", "rs"), tap(local(7, 8, 30), "on", "9", "ng"),
            tap(local(7, 8, 40), "off", "9", "ng")]
    assert amounts(taps, rules=parse_rules(data)) == [200, 200]


# ------------------------------------------------------------------ caps

def _flat_boardings(times, route_stops=(("12", "rs"), ("12", "ps"))):
    """Flat boardings at `times`, alternating stops; hours apart keeps transfers out."""
    return [tap(at, "on", *route_stops[i % 2]) for i, at in enumerate(times)]


def test_day_cap_cuts_the_charge_that_reaches_it_and_frees_the_rest():
    taps = _flat_boardings([local(7, h) for h in (6, 8, 10, 12, 14, 16, 18)])
    charges = charges_of(taps, rules=parse_rules(_set(example_dict(), ["products", "city_flat", "amount"], 500)))
    assert [c.amount for c in charges] == [500, 500, 200, 0, 0, 0, 0]
    assert charges[2].lines[-1].kind == "day_cap" and charges[2].lines[-1].amount == -300
    assert "Daily cap for 2026-12-07" in charges[2].statement()


def test_day_cap_counts_what_was_already_charged_today():
    taps = _flat_boardings([local(7, h) for h in (6, 8)])
    assert amounts(taps, already_charged_today=1100) == [100, 0]
    assert amounts(taps, already_charged_today=5000) == [0, 0]


def test_days_are_local_days_across_midnight():
    # 23:00 and 01:00 Shanghai: 15:00 and 17:00 UTC the same UTC day, two local days
    times = [local(7, 19), local(7, 21), local(7, 23), local(8, 1), local(8, 3)]
    assert times[2].astimezone(timezone.utc).date() == times[3].astimezone(timezone.utc).date()
    rules = parse_rules(_set(example_dict(), ["products", "city_flat", "amount"], 500))
    assert amounts(_flat_boardings(times), rules=rules) == [500, 500, 200, 500, 500]


def test_week_cap_and_a_new_week_on_monday_local():
    rules = parse_rules(_set(example_dict(), ["products", "city_flat", "amount"], 1200))
    # one capped day (12.00) each day from Monday 7th: 4 days = 48.00, Friday gets 2.00 of the 50.00
    times = [local(d, 9) for d in range(7, 14)] + [local(14, 0, 30)]
    charges = charges_of(_flat_boardings(times), rules=rules)
    assert [c.amount for c in charges] == [1200, 1200, 1200, 1200, 200, 0, 0, 1200]
    assert charges[4].lines[-1].kind == "week_cap"
    assert "week from 2026-12-07" in charges[4].statement()


def test_week_cap_counts_what_was_already_charged_this_week():
    taps = _flat_boardings([local(13, 9), local(13, 20), local(14, 0, 30)])
    assert amounts(taps, already_charged_this_week=4900) == [100, 0, 200]


def test_class_caps_are_the_classs_own():
    times = [local(7, h) for h in (6, 8, 10, 12, 14, 16, 18, 20)]
    taps = []
    for at in times:  # 600 a trip for an adult, 300 for a student
        taps += [tap(at, "on", "A1", "ch"), tap(at + timedelta(minutes=40), "off", "A1", "ap")]
    assert amounts(taps, "adult") == [600, 600, 0, 0, 0, 0, 0, 0]
    assert amounts(taps, "student") == [300, 300, 0, 0, 0, 0, 0, 0]
    assert amounts(taps, "senior") == [0] * 8
    # a child: 500 a trip, day cap 400, no week cap
    assert amounts(taps, "child") == [400, 0, 0, 0, 0, 0, 0, 0]


def test_bad_amounts_already_charged_are_refused():
    for kw in ({"already_charged_today": -1}, {"already_charged_this_week": 1.5}):
        with pytest.raises(ValueError, match="non-negative"):
            charges_of([tap(local(7, 8), "on", "12", "rs")], **kw)


# ------------------------------------------------------------------ versions

def test_each_trip_is_priced_with_the_version_its_tap_names():
    v3 = example_rules()
    data = _set(_set(example_dict(), ["version"], 4), ["effective_from"], "2026-12-07T12:00:00+08:00")
    v4 = parse_rules(_set(data, ["products", "city_flat", "amount"], 250))
    taps = [tap(local(7, 8), "on", "12", "rs"),  # before v4: v3
            tap(local(7, 13), "on", "12", "ps", version=3),  # validator still had v3
            tap(local(7, 16), "on", "12", "rs"),  # in effect: v4
            tap(local(7, 19), "on", "12", "ps", version=2)]  # unknown now: in effect, v4
    charges = price_trips([v3, v4], build_trips(taps), "adult")
    assert [(c.rules_version, c.amount) for c in charges] == [(3, 200), (3, 200), (4, 250), (4, 250)]


def test_versions_in_different_currencies_are_refused():
    hkd = parse_rules(_set(_set(example_dict(), ["version"], 4), ["currency"], "HKD"))
    with pytest.raises(ValueError, match="one currency"):
        price_trips([example_rules(), hkd], build_trips([tap(local(7, 8), "on", "12", "rs")]), "adult")
    with pytest.raises(ValueError, match="one currency"):
        price_trips([], [], "adult")


# ------------------------------------------------------------------ JSON forms

def test_taps_and_charges_have_a_json_form():
    from gateway.core.trips import charge_to_dict, tap_from_dict, tap_to_dict
    on = tap(local(7, 8, 0), "on", "9", "ng", version=3)
    assert tap_to_dict(on)["at"] == "2026-12-07T00:00:00Z"
    assert tap_from_dict(tap_to_dict(on)) == on  # equal instants compare equal across zones
    off = tap(local(7, 8, 30), "off", "9", "hb")
    [charge] = charges_of([on, off])
    data = charge_to_dict(charge)
    assert data["amount"] == 400 and data["trip"]["status"] == "complete"
    assert sum(line["amount"] for line in data["lines"]) == data["amount"]
    assert data["trip"]["on"]["rules_version"] == 3


@pytest.mark.parametrize("change,error", [
    ({"at": "2026-12-07T08:00:00"}, "taps[0].at: must carry a UTC offset"),
    ({"at": 5}, "taps[0].at: must be an ISO 8601 time"),
    ({"kind": "in"}, "taps[0]: tap kind must be 'on' or 'off'"),
    ({"speed": 3}, "taps[0].speed: unknown field"),
    ({"stop": None}, "taps[0]: tap stop must be"),
])
def test_bad_tap_json_names_the_field(change, error):
    from gateway.core.trips import tap_from_dict, tap_to_dict
    data = {**tap_to_dict(tap(local(7, 8), "on", "9", "ng")), **change}
    with pytest.raises(ValueError) as caught:
        tap_from_dict(data, "taps[0]")
    assert str(caught.value).startswith(error)
    with pytest.raises(ValueError, match="taps.id: is required"):
        tap_from_dict({k: v for k, v in tap_to_dict(tap(local(7, 8), "on", "9", "ng")).items() if k != "id"}, "taps")
    with pytest.raises(ValueError, match="taps: must be an object"):
        tap_from_dict([], "taps")
