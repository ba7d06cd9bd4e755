"""Checks the coffee card's scenarios run with `- call: checks.py:NAME` (anything YAML cannot say).

Each function gets the card in the reader's field (tapstack.testing.CardChannel): `send`,
`select` and `transmit` to it, `vars` for the scenario's variables. An assert that fails
fails the step with its message; a returned dict sets variables for the later steps.
"""
from __future__ import annotations


def points_are(card, points: int):
    """The card holds these points, read the way the till app reads them."""
    answer = card.send("80B0000002")
    assert answer.sw == 0x9000, f"POINTS answered {answer.describe()}"
    held = int.from_bytes(answer.data, "big")
    assert held == points, f"the card holds {held} points, not {points}"


def history_adds_up(card, opening: int = 0):
    """Every movement in the history, earned minus redeemed, makes the points the card holds."""
    history = card.send("80B2000000")  # Le 00: a T=0 card answers 6Cxx and the reader asks again
    assert history.sw == 0x9000, history.describe()
    moves = [history.data[i:i + 3] for i in range(0, len(history.data), 3)]
    assert moves, "the history is empty"
    total = opening + sum(int.from_bytes(m[1:], "big") * (1 if m[0] == 0xE0 else -1) for m in moves)
    held = int.from_bytes(card.send("80B0000002").data, "big")
    assert total == held, f"the history adds up to {total}, the card holds {held}"
    return {"moves": bytes([len(moves)])}
