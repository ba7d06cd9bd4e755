"""Properties of trip pricing over random riders' taps: caps hold per local day and week,
charges are never negative and add up to their lines, a later tap never lowers what
earlier trips cost, and the order in which taps arrive changes nothing."""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.trips import Tap, build_trips, price_trips
from protocol.fares import parse_rules
from tests.protocol.test_fares import example_dict

NETWORK = [(r["id"], [s["id"] for s in r["stops"]]) for r in example_dict()["routes"]]
START = datetime(2026, 12, 5, 5, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Saturday: weeks get crossed

caps = st.one_of(st.none(), st.integers(0, 3000))
tap_steps = st.lists(st.tuples(
    st.integers(0, 6 * 60),  # minutes after the previous tap
    st.sampled_from(["on", "on", "off"]),
    st.integers(0, len(NETWORK) - 1),
    st.integers(0, 3),
), max_size=30)


@st.composite
def riders(draw):
    data = example_dict()
    klass = draw(st.sampled_from(sorted(data["concessions"])))
    data["concessions"][klass]["caps"] = {"day": draw(caps), "week": draw(caps)}
    if draw(st.booleans()):
        data["transfer"]["discount"] = draw(st.sampled_from(
            [{"kind": "free"}, {"kind": "percent", "percent": 33}, {"kind": "amount", "amount": 150}]))
    rules = parse_rules(data)
    at, taps = START, []
    for i, (minutes, kind, route, stop) in enumerate(draw(tap_steps)):
        at += timedelta(minutes=minutes)
        rid, stops = NETWORK[route]
        taps.append(Tap(f"t{i:03d}", "pan_rider", at, kind, rid, stops[stop % len(stops)]))
    today = draw(st.integers(0, 1500))
    week = draw(st.integers(today, 6000))
    return rules, klass, taps, today, week


def _price(rules, klass, taps, today=0, week=0):
    return price_trips(rules, build_trips(taps), klass, today, week)


@settings(max_examples=300, deadline=None)
@given(riders())
def test_day_and_week_caps_hold_and_charges_are_never_negative(rider):
    rules, klass, taps, today, week = rider
    charges = _price(rules, klass, taps, today, week)
    cap = rules.concessions[klass].caps
    per_day, per_week = {}, {}
    if charges:
        first = charges[0].trip.at
        per_day[rules.local_day(first)] = today
        per_week[rules.week_start(first)] = week
    for c in charges:
        assert c.amount >= 0
        assert sum(line.amount for line in c.lines) == c.amount
        per_day[c.local_day] = per_day.get(c.local_day, 0) + c.amount
        key = rules.week_start(c.trip.at)
        per_week[key] = per_week.get(key, 0) + c.amount
    if cap.day is not None:
        for day, total in per_day.items():
            # what was charged before these trips may already be over the cap; these add nothing then
            assert total <= max(cap.day, today if charges and day == rules.local_day(charges[0].trip.at) else 0)
    if cap.week is not None:
        for start, total in per_week.items():
            assert total <= max(cap.week, week if charges and start == rules.week_start(charges[0].trip.at) else 0)


@settings(max_examples=200, deadline=None)
@given(riders())
def test_a_later_tap_never_lowers_what_earlier_trips_cost(rider):
    rules, klass, taps, today, week = rider
    before: dict[str, int] = {}
    for n in range(len(taps) + 1):
        now = {c.trip.id: c.amount for c in _price(rules, klass, taps[:n], today, week)}
        for trip_id, amount in before.items():
            assert now[trip_id] >= amount
        assert sum(now.values()) >= sum(before.values())
        before = now


@settings(max_examples=200, deadline=None)
@given(riders(), st.randoms(use_true_random=False))
def test_pricing_does_not_depend_on_the_order_taps_arrive_in(rider, rnd):
    rules, klass, taps, today, week = rider
    shuffled = taps[:]
    rnd.shuffle(shuffled)

    def summary(charges):
        return [(c.trip.id, c.trip.status, c.amount, c.lines) for c in charges]

    assert summary(_price(rules, klass, shuffled, today, week)) == summary(_price(rules, klass, taps, today, week))


@settings(max_examples=100, deadline=None)
@given(riders())
def test_every_tap_ends_up_in_exactly_one_trip(rider):
    _, _, taps, _, _ = rider
    seen = []
    for trip in build_trips(random.Random(1).sample(taps, len(taps))):
        seen += [t.id for t in (trip.on, trip.off) if t is not None] + [t.id for t in trip.repeats]
    assert sorted(seen) == sorted(t.id for t in taps)
