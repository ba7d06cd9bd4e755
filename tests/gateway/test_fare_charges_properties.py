"""Across charging runs, whatever order taps arrive in: a day never costs more than its cap,
the rider pays what one run over all the taps would charge (or what was already charged, if
late taps made the day cheaper), and a rerun charges nothing."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.trips import Tap, build_trips, price_trips
from protocol import tokens
from protocol.fares import parse_rules
from tests.gateway.fixtures import ok
from tests.gateway.test_card_links import link_code, tap
from tests.gateway.test_fare_charges import RULES, at, publish, run

_riders = itertools.count(1)
_taps = itertools.count(1)
DAY_CAP = RULES["concessions"]["adult"]["caps"]["day"]


def one_run_total(terminal_id: str, rows: list[dict]) -> int:
    """What pricing all the taps at once charges (the pure engine, no store)."""
    found = [Tap(f"{terminal_id}/{r['id']}", r["token"], datetime.fromtimestamp(r["at"], timezone.utc), "on",
                 r["route"], r["stop"], 1) for r in rows]
    return sum(c.amount for c in price_trips(parse_rules(RULES), build_trips(found), "adult") if c.flag is None)


rides = st.lists(st.tuples(st.integers(0, 14 * 60), st.sampled_from(["12", "7"])), min_size=1, max_size=7)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rides=rides, split=st.integers(0, 7))
def test_runs_charge_the_difference_never_beyond_the_cap(world, config, store, rides, split):
    publish(config)
    token = tokens.pan_token(b"p" * 32, f"4000{next(_riders):012d}")  # a fresh rider per example
    ok(tap(world, link_code(world), token), 201)
    world.top_up("a", 10_000)
    terminal_id, api = world.terminal("x")
    rows = [{"id": f"prop-{next(_taps):07d}", "at": at("06:00") + minute * 60, "kind": "emv", "accepted": True,
             "reason": "token", "route": route, "stop": "rs" if route == "12" else "ma", "rules_version": 1,
             "currency": "CNY", "token": token} for minute, route in rides]

    def paid() -> int:
        with store.read() as tx:
            return tx.one("SELECT COALESCE(SUM(amount), 0) AS s FROM fare_charges WHERE token = :t "
                          "AND status = 'charged'", {"t": token})["s"]

    first, late = rows[:split], rows[split:]
    for batch in (first, late):
        if batch:
            ok(api.post("/v1/taps", {"taps": batch}))
        run(world)
    total = paid()
    assert total <= DAY_CAP
    assert total == max(one_run_total(terminal_id, first) if first else 0, one_run_total(terminal_id, rows))
    assert run(world)["charged"]["count"] == 0 and paid() == total
