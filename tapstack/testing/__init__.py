"""tapstack's emulated-reader test kit: virtual readers over every transport, virtual cards,
YAML tap scenarios, and APDU traces recorded from real cards and replayed as virtual ones.

    tapstack.testing.fields    Field (a reader and the card side feeding it), Stage (pcscd, ports)
    tapstack.testing.cards     ScriptedCard: answers by APDU patterns or a Python function
    tapstack.testing.replay    ReplayCard: a recorded trace (terminal/trace.py) as a card
    tapstack.testing.scenario  the scenario file: load_scenario(path) -> Scenario, ScenarioError
    tapstack.testing.runner    run_scenario(scenario, field_source) -> ScenarioResult
    tapstack.testing.plugin    the pytest plugin (fixtures, --tapstack-transport, YAML collector)
    tapstack.testing.tears     the tear matrix: tear_matrix() cases, run_tear(case, field) -> TearResult

docs/testing.md walks through it.
"""
