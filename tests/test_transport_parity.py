"""Transport parity: every example scenario decides the same on mock, pcscd+vpcd and nfcpy udp.

Each scenario runs over every transport chosen (--tapstack-transport, default all) and must
pass there; then the decision of each presentation (kind, accepted, reason, amount, the
balance the receipt states, the token, the card) must be the same on all of them. Only
what the rider and the journal see is compared: receipts differ by their random nonces,
timings and reader names by transport.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tapstack.testing.fields import parse_transports
from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import find_scenarios, load_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scenarios"


def decisions(result) -> list[tuple]:
    """What each presentation decided, as comparable values."""
    out = []
    for step in result.steps:
        if step.step.action != "present":
            continue
        d = step.decision
        card_id = d.card_id.hex() if isinstance(d.card_id, bytes) else d.card_id
        out.append((step.step.line, d.kind, d.accepted, d.reason, d.amount, d.balance_after, d.token, card_id))
    return out


@pytest.mark.parametrize("path", find_scenarios(EXAMPLES), ids=lambda p: p.stem)
def test_every_transport_decides_an_example_the_same(path, pytestconfig, tapstack_stage):
    scenario = load_scenario(path)
    chosen = parse_transports(pytestconfig.getoption("--tapstack-transport"))
    transports = [t for t in chosen if scenario.transports is None or t in scenario.transports]
    seen = {}
    for transport in transports:
        result = run_scenario(scenario, transport, tapstack_stage)
        assert result.ok, result.report()
        seen[transport] = decisions(result)
    assert seen and all(seen.values()), "a scenario without a presentation decides nothing"
    assert disagreements(seen) == [], f"{path.name}:\n" + "\n".join(disagreements(seen))


def disagreements(seen: dict[str, list[tuple]]) -> list[str]:
    """Each presentation decided differently by some transport, said for a person."""
    (first, mine), *others = seen.items()
    found = []
    for other, theirs in others:
        if len(theirs) != len(mine):
            found.append(f"{len(mine)} presentations over {first}, {len(theirs)} over {other}")
        found += [f"line {a[0]}: {first} decided {a[1:]}, {other} {b[1:]}" for a, b in zip(mine, theirs) if a != b]
    return found


def test_a_disagreement_is_reported():
    paid = (9, "purse", True, "paid", 200, 1800, None, "5441500000000001")
    torn = (9, "error", False, "card_removed", None, None, None, None)
    assert disagreements({"mock": [paid], "pcscd+vpcd": [paid], "nfcpy-udp": [paid]}) == []
    assert disagreements({"mock": [paid], "pcscd+vpcd": [torn]}) == [
        f"line 9: mock decided {paid[1:]}, pcscd+vpcd {torn[1:]}"]
    assert disagreements({"mock": [paid, paid], "nfcpy-udp": [paid]}) == ["2 presentations over mock, 1 over nfcpy-udp"]
