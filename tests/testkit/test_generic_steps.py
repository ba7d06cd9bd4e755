"""The generic reader steps (select, send, call, save) as they run and as they fail."""
from __future__ import annotations

import textwrap

import pytest

from tapstack.testing.fields import Stage
from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import load_scenario

CHECKS = """\
def points(card, at_least=0):
    answer = card.send("80B0000002")
    held = int.from_bytes(answer.data, "big")
    assert held >= at_least, f"only {held} points"
    return {"held": answer.data}

def broken(card):
    return {"x": 12}

def raises(card):
    card.send("80B0000002")
    return {}["nothing"]
"""

CLUB = """\
from tapstack.testing import Card, respond

class Club(Card):
    protocol = "T=0"
    def __init__(self, points=0):
        self.points = points
    def process(self, command):
        if command.ins == 0xB0:
            return respond(0x9000, self.points.to_bytes(2, "big"))
        if command.ins == 0xE0:
            self.points += command.data[0]
            return respond(0x9000, self.points.to_bytes(2, "big"))
        if command.ins == 0xEE:
            raise RuntimeError("the card's own bug")
        return respond(0x6D00)
"""


def run(tmp_path, text: str, transport="mock", stage=None):
    (tmp_path / "checks.py").write_text(CHECKS)
    (tmp_path / "club.py").write_text(CLUB)
    path = tmp_path / "scenario_g.yaml"
    path.write_text(textwrap.dedent(text))
    return run_scenario(load_scenario(path), transport, stage or Stage())


def test_a_tap_then_the_generic_steps_on_the_same_card_over_every_transport(tmp_path, tapstack_transport,
                                                                            tapstack_stage):
    result = run(tmp_path, """\
        cards:
          alice: {type: purse, balance: 500, card_id: "5441500000000009"}
          club: {type: python, class: "club.py:Club", options: {points: 3}}
        readers:
          bus: {program: tap, fare: 200}
        steps:
          - present: alice
          - expect: {outcome: accept, reason: paid, balance: 300}
          - select: {aid: "F0746170737461636B01", capture: {purse: {tlv: "6F/A5/C0"}},
                     expect: {tlv: {"6F/84": "F0746170737461636B01", "C0": "01 ?? 5441500000000009 * 0000012C 00000001"}}}
          - send: {apdu: "FFCA000000", capture: {uid: data}}
          - expect: {uid: "{uid}"}
          - present: club
          - expect: {outcome: accept, kind: uid, reason: token}   # no purse, no EMV: its UID
          - send: {apdu: "80E00000", data: "04", le: 2, expect: {sw: "9000", data: "0007"}}
          - send: {apdu: "80B0000000", expect: {data: "0007"}}
          - call: {function: "checks.py:points", args: {at_least: 7}}
          - send: {apdu: "80B0000002", expect: {data: "{held}"}}
          - send: {apdu: "80AA0000", expect: {sw: ["6A82", "6Dxx"]}}
          - save: {card: club, file: club.image.yaml}
        """, tapstack_transport, tapstack_stage)
    assert result.ok, result.report()
    assert "points: 7" in (tmp_path / "club.image.yaml").read_text()


def test_a_failing_send_shows_the_cards_session_so_far(tmp_path):
    result = run(tmp_path, """\
        cards:
          club: {type: python, class: "club.py:Club", options: {points: 3}}
        steps:
          - present: club
          - send: {apdu: "80E00000", data: "04", le: 2}
          - send: {apdu: "80B0000002", expect: {data: "0009"}}
        """)
    report = result.report()
    assert report.startswith(f"{tmp_path / 'scenario_g.yaml'}:6: step 'send' failed (scenario_g, over mock)")
    assert "    - send: {apdu: \"80B0000002\", expect: {data: \"0009\"}}" in report
    assert "  data: expected 0009, seen 0007" in report
    assert "APDUs of the card's session (card numbers masked):" in report
    assert ">> 80E00000010402\n    << 00079000\n    >> 80B0000002\n    << 00079000" in report


def test_the_default_status_word_is_9000_and_says_so(tmp_path):
    result = run(tmp_path, "cards:\n  club: {type: python, class: 'club.py:Club'}\nsteps:\n  - present: club\n"
                           "  - send: '80AA0000'\n")
    assert "sw: expected 9000 (expected unless the step says sw: ...), seen 6D00 (instruction not supported)" \
        in result.report()


@pytest.mark.parametrize("call, words", [
    ("{function: 'checks.py:points', args: {at_least: 99}}", "checks.py:points failed: checks.py:4 "
                                                             "`assert held >= at_least, f\"only {held} points\"`: only 3 points"),
    ("checks.py:broken", "checks.py:broken returned x=12: a variable is bytes or hex text"),
    ("checks.py:raises", "checks.py:raises raised KeyError: 'nothing' (checks.py:12 `return {}[\"nothing\"]`)"),
])
def test_a_call_step_fails_with_the_users_own_line(call, words, tmp_path):
    result = run(tmp_path, f"cards:\n  club: {{type: python, class: 'club.py:Club', options: {{points: 3}}}}\n"
                           f"steps:\n  - present: club\n  - call: {call}\n")
    assert not result.ok and words in result.report(), result.report()


def test_a_card_that_raises_fails_the_step_that_made_it(tmp_path):
    result = run(tmp_path, """\
        cards:
          club: {type: python, class: "club.py:Club"}
        steps:
          - present: club
          - send: {apdu: "80EE0000", expect: {sw: "6F00"}}
        """)
    report = result.report()
    assert ":5: step 'send' failed" in report
    assert "card 'club' failed to answer (answered 6F00):" in report
    assert "80EE0000: club.py:14 in process: RuntimeError: the card's own bug" in report


def test_an_ordered_script_fails_the_step_of_a_command_out_of_turn(tmp_path):
    text = """\
        cards:
          s:
            type: scripted
            ordered: true
            answers:
              - {command: "00A4040006F0434C554201*", answer: "9000"}
              - {regex: "80CA.*", answer: "0102 9000", times: 2}
        steps:
          - present: s
          - select: "F0434C554201"
          - send: {apdu: "80CA000002", expect: {data: "0102"}}
          - send: {apdu: "80CA000002", expect: {data: "0102"}}
          - send: {apdu: "80CA000002", expect: {sw: "6D00"}}
        """
    report = run(tmp_path, text).report()
    assert ":13: step 'send' failed" in report
    assert "  card 's' got commands out of its script:\n    80CA000002: the script had ended (all 2 commands answered)" \
        in report
    assert run(tmp_path, text.replace("ordered: true", "ordered: true\n            strict: false")).ok


def test_a_variable_a_call_step_did_not_set_fails_at_run_time(tmp_path):
    result = run(tmp_path, "cards:\n  club: {type: python, class: 'club.py:Club'}\nsteps:\n  - present: club\n"
                           "  - call: checks.py:points\n  - send: '80B0{hled}02'\n")
    assert "apdu: variable 'hled' is not set (the call steps before did not set it)" in result.report()


def test_a_generic_step_without_a_card_says_to_present_one(tmp_path):
    result = run(tmp_path, "cards:\n  club: {type: python, class: 'club.py:Club'}\nsteps:\n  - send: '80B0000002'\n")
    assert "no card is in the field of reader 'reader': present one first (- present: CARD)" in result.report()
