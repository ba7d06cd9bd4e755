"""The terminal's rooms keep their arrows: the card decision journals nothing and tells no
one; the bus desk and the till desk share it and import nothing of each other."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

TERMINAL = Path(__file__).resolve().parents[2] / "terminal"


def imports(name: str) -> set[str]:
    """The modules a terminal module imports, by their full dotted name."""
    found = set()
    for node in ast.walk(ast.parse((TERMINAL / name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_card_decision_touches_no_journal_panel_or_network():
    assert {m for m in imports("card.py")
            if m.startswith(("terminal.journal", "terminal.display", "terminal.uploader", "terminal.loop",
                             "protocol.uplink.client", "terminal.bus", "terminal.till"))} == set()


@pytest.mark.parametrize("desk, other", [("bus.py", "terminal.till"), ("till.py", "terminal.bus")])
def test_no_desk_imports_the_other_and_both_share_the_card_decision(desk, other):
    found = imports(desk)
    assert not any(m == other or m.startswith(other + ".") for m in found)
    assert not any(m == "terminal.run" or m.startswith("terminal.run.") for m in found)
    assert {"terminal.card", "terminal.writeahead", "terminal.sync"} <= found


def test_neither_desk_subclasses_the_other():
    from terminal.bus import Validator
    from terminal.loop import Desk
    from terminal.till import Till

    assert Validator not in Till.__mro__ and Till not in Validator.__mro__
    for desk in (Validator, Till):
        assert all(name in vars(desk) for name in ("between_cards", "handle_card", "finished", "clock_jumped"))
        assert {"between_cards", "handle_card", "finished", "clock_jumped"} <= set(vars(Desk))
