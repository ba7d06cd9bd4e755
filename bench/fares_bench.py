"""Trips priced per second by the fare engine, over 10,000 riders' days.

Builds the example network of docs/fares.md, makes one day of taps for each rider
(1 to 4 boardings: flat, zone and distance routes, some transfers, some missing
tap-offs, some repeated taps, a few orphan tap-offs), then times, per rider-day,
`build_trips` + `price_trips`. Prints trips/s, the median and p90/p99 per rider-day,
the time of one `price_boarding` (what a validator does per purse tap) and, measured
in the same run, a baseline: sorting the rider's taps and adding a flat fare per
tap-on, the least any pricing in Python does; and the ratio to it.

    python bench/fares_bench.py [--riders 10000] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protocol.fares import parse_rules, price_boarding  # noqa: E402
from gateway.core.trips import Tap, build_trips, price_trips  # noqa: E402

CLASSES = ["adult"] * 7 + ["student", "senior", "child"]


def example_rules():
    text = (REPO / "docs" / "fares.md").read_text()
    return parse_rules(json.loads(re.search(r"^```json\n(.*?)^```$", text, flags=re.S | re.M).group(1)))


def rider_day(rules, rnd: random.Random, n: int) -> list[Tap]:
    token, taps = f"pan_{n:08d}", []
    at = datetime(2026, 12, 8, 6, tzinfo=ZoneInfo(rules.timezone)) + timedelta(minutes=rnd.randrange(14 * 60))
    for _ in range(rnd.randint(1, 4)):
        route = rnd.choice(rules.routes)
        on, off = sorted(rnd.sample(range(len(route.stops)), 2))
        taps.append(Tap(f"{token}-{len(taps)}", token, at, "on", route.id, route.stops[on].id))
        if rnd.random() < 0.05:  # a repeated tap
            taps.append(Tap(f"{token}-{len(taps)}", token, at + timedelta(seconds=20), "on", route.id,
                            route.stops[on].id))
        at += timedelta(minutes=rnd.randint(5, 50))
        needs_off = rules.products[route.product].needs_tap_off
        if needs_off and rnd.random() < 0.9:  # a tenth forget to tap off
            taps.append(Tap(f"{token}-{len(taps)}", token, at, "off", route.id, route.stops[off].id))
        elif rnd.random() < 0.02:  # an orphan tap-off
            taps.append(Tap(f"{token}-{len(taps)}", token, at, "off", route.id, route.stops[off].id))
        at += timedelta(minutes=rnd.choice([3, 10, 30, 120, 300]))
    rnd.shuffle(taps)  # uploads arrive in any order
    return taps


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--riders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rules = example_rules()
    rnd = random.Random(args.seed)
    days = [(rnd.choice(CLASSES), rider_day(rules, rnd, n)) for n in range(args.riders)]
    flat = rules.products["city_flat"].amount

    engine, baseline, trips = [], [], 0
    for klass, taps in days:  # interleaved, so both see the same machine state
        t0 = time.perf_counter_ns()
        charges = price_trips(rules, build_trips(taps), klass)
        t1 = time.perf_counter_ns()
        ordered = sorted(taps, key=lambda tap: (tap.at, tap.id))
        total = sum(flat for tap in ordered if tap.kind == "on")
        t2 = time.perf_counter_ns()
        assert total >= 0
        engine.append((t1 - t0) / 1000)
        baseline.append((t2 - t1) / 1000)
        trips += len(charges)

    board = []
    stops = [(r.id, s.id) for r in rules.routes for s in r.stops]
    for _ in range(20_000):
        route, stop = rnd.choice(stops)
        t0 = time.perf_counter_ns()
        price_boarding(rules, route, stop, None, "adult")
        board.append((time.perf_counter_ns() - t0) / 1000)

    total_s = sum(engine) / 1e6
    med, base_med = statistics.median(engine), statistics.median(baseline)
    print(f"rider-days: {len(days)}, taps: {sum(len(t) for _, t in days)}, trips priced: {trips}")
    print(f"fare engine: {trips / total_s:,.0f} trips/s, {len(days) / total_s:,.0f} rider-days/s")
    print(f"per rider-day: median {med:.1f} us, p90 {percentile(engine, 90):.1f} us, "
          f"p99 {percentile(engine, 99):.1f} us")
    print(f"baseline (sort taps, flat fare per tap-on): median {base_med:.1f} us, "
          f"p99 {percentile(baseline, 99):.1f} us")
    print(f"ratio engine/baseline (medians): {med / base_med:.1f}x")
    print(f"price_boarding (validator, missing tap-off price): median {statistics.median(board):.1f} us, "
          f"p99 {percentile(board, 99):.1f} us")


if __name__ == "__main__":
    main()
