"""tapstack's emulated-reader test kit: virtual readers over every transport, cards you
describe (scripted or in Python), YAML scenarios with generic reader steps, and APDU traces
recorded from real cards and replayed as virtual ones.

    tapstack.testing.fields    Field (a reader and the card side feeding it), Stage (pcscd, ports)
    tapstack.testing.cards     Card (a card's logic in Python), ScriptedCard, T=0 behaviour
    tapstack.testing.cardfile  cards from their descriptions; card images (save_card, load_card)
    tapstack.testing.channel   CardChannel: send, select and transmit to the card in a field
    tapstack.testing.expect    hex patterns (63Cx, 6F*), TLV paths, captures, variables
    tapstack.testing.replay    ReplayCard: a recorded trace (terminal/trace.py) as a card
    tapstack.testing.scenario  the scenario file: load_scenario(path) -> Scenario, ScenarioError
    tapstack.testing.runner    run_scenario(scenario, transport, stage) -> ScenarioResult
    tapstack.testing.plugin    the pytest plugin (fixtures, --tapstack-transport, YAML collector)
    tapstack.testing.tears     the tear matrix: tear_matrix() cases, run_tear(case, field) -> TearResult

docs/testing.md walks through it.
"""
from protocol.apdu import respond
from tapstack.testing.cards import Card, PythonCard, ScriptedCard
from tapstack.testing.channel import CardChannel


def load_card(path):
    """The card a card file (or a saved image) describes (tapstack.testing.cardfile.load_card)."""
    from tapstack.testing.cardfile import load_card as load

    return load(path).card


__all__ = ["Card", "CardChannel", "PythonCard", "ScriptedCard", "load_card", "respond"]
