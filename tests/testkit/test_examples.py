"""The shipped examples: pytest collects examples/ itself (testpaths), so every scenario file
there runs once per transport through the plugin and the coffee card's Python tests run as a
user's would. Here: that they cover what docs/testing.md promises."""
from __future__ import annotations

from pathlib import Path

from tapstack.testing.scenario import find_scenarios, load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REQUIRED = {"purse tap accepted", "balance too low", "deny-listed card", "torn debit recovered", "EMV card tokenised",
            "plain UID card", "unknown card", "scripted garbage card", "replayed EMV trace", "replayed purse trace",
            "slow card", "coffee card, in Python", "coffee card, scripted"}


def test_the_examples_cover_the_documented_cases():
    assert REQUIRED <= {load_scenario(f).name for f in find_scenarios(EXAMPLES)}


def test_the_coffee_card_runs_on_every_transport_with_generic_steps_only():
    for name in ("scenario_coffee_card.yaml", "scenario_coffee_scripted.yaml"):
        scenario = load_scenario(EXAMPLES / "coffee-card" / name)
        assert scenario.transports is None  # all three
        assert {s.action for s in scenario.steps} <= {"present", "select", "send", "call", "remove", "expect"}
        assert all(r.program == "none" for r in scenario.readers.values())
