"""Scenario benchmark: scenario steps per second over each transport, against a one-APDU round trip.

Runs the shipped example scenarios (examples/scenarios) --repeat times over each transport
(in-process mock, the real pcscd with vsmartcard-vpcd, nfcpy's udp driver) through the
test kit's runner, and times every step. The baseline, measured in the same run through
the same kind of field: one SELECT of an absent application (6A82), the cheapest exchange
a card answers, with the card already in the field.

    python bench/scenario_bench.py [--repeat 3] [--apdus 500] [--transport mock --transport nfcpy-udp ...]

Printed per transport: the APDU round trip p50/p99; scenario steps per second (wall time
of whole runs, field setup included); p50/p99 of a `present` step (card arrival plus the
tap) and of all steps; and present p50 / APDU p50. A present step is dominated by card
arrival, which is the reader's polling (pcscd checks the vpcd slot every 400 ms; the
loopback nfcpy reader polls its card within milliseconds: bench/arrival_bench.py), not
the tap.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol.apdu import select_by_name  # noqa: E402
from tapstack.testing.fields import TRANSPORTS, Stage, StageError  # noqa: E402
from tapstack.testing.runner import run_scenario  # noqa: E402
from tapstack.testing.scenario import find_scenarios, load_scenario  # noqa: E402
from wallet.card import plain_uid_card  # noqa: E402

BASELINE = select_by_name(bytes.fromhex("F000000000DEAD")).to_bytes()  # no such applet: 6A82


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def apdu_round_trips(stage: Stage, transport: str, n: int) -> list[float]:
    field = stage.open(transport)
    try:
        session = field.tap(plain_uid_card(bytes.fromhex("04C0FFEE123456")))
        times = []
        for _ in range(n):
            start = time.perf_counter()
            answer = session.transmit(BASELINE)
            times.append(time.perf_counter() - start)
            assert answer == b"\x6A\x82", answer.hex()
        return sorted(times)
    finally:
        field.close()


def scenario_steps(stage: Stage, transport: str, repeat: int) -> tuple[list[float], list[float], int, float]:
    """(all step times, present step times, steps run, wall seconds)."""
    scenarios = [load_scenario(f) for f in find_scenarios(ROOT / "examples" / "scenarios")]
    steps, presents, count = [], [], 0
    start = time.perf_counter()
    for _ in range(repeat):
        for scenario in scenarios:
            result = run_scenario(scenario, transport, stage)
            if not result.ok:
                raise SystemExit(f"scenario failed over {transport}:\n{result.report()}")
            for s in result.steps:
                steps.append(s.seconds)
                if s.step.action == "present":
                    presents.append(s.seconds)
            count += len(result.steps)
    return sorted(steps), sorted(presents), count, time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the example scenarios per transport")
    parser.add_argument("--apdus", type=int, default=500, help="baseline round trips per transport")
    parser.add_argument("--transport", action="append", choices=TRANSPORTS)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.repeat} runs of the example scenarios, {args.apdus} baseline APDUs")
    print(f"{'transport':<11} {'apdu p50':>8} {'apdu p99':>8} {'steps/s':>8} {'present p50':>11} "
          f"{'present p99':>11} {'step p50':>8} {'step p99':>8} {'present/apdu':>12}   (ms)")
    with Stage() as stage:
        for transport in args.transport or TRANSPORTS:
            try:
                apdus = apdu_round_trips(stage, transport, args.apdus)
            except StageError as e:
                print(f"{transport:<11} cannot run: {e}")
                continue
            steps, presents, count, wall = scenario_steps(stage, transport, args.repeat)
            apdu_p50, present_p50 = statistics.median(apdus), statistics.median(presents)
            print(f"{transport:<11} {ms(apdu_p50)} {ms(percentile(apdus, 99))} {count / wall:8.1f} "
                  f"{ms(present_p50):>11} {ms(percentile(presents, 99)):>11} {ms(statistics.median(steps))} "
                  f"{ms(percentile(steps, 99))} {present_p50 / apdu_p50:12.1f}")


if __name__ == "__main__":
    main()
