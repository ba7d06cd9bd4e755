"""The shipped example scenarios pass over every transport (pcscd ones fail, never skip, without pcscd)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import find_scenarios, load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
FILES = find_scenarios(EXAMPLES)
REQUIRED = {"purse tap accepted", "balance too low", "deny-listed card", "torn debit recovered", "EMV card tokenised",
            "plain UID card", "unknown card", "scripted garbage card", "replayed EMV trace", "replayed purse trace",
            "slow card"}


def test_the_examples_cover_the_documented_cases():
    assert REQUIRED <= {load_scenario(f).name for f in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_scenario(path, tapstack_transport, tapstack_stage):
    result = run_scenario(load_scenario(path), tapstack_transport, tapstack_stage)
    assert result.ok, result.report()
    assert len(result.steps) == len(result.scenario.steps) > 1
