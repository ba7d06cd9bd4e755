"""Scripted cards (patterns, answers in turn, functions) and replayed traces as cards."""
from __future__ import annotations

import io

import pytest

from tapstack.testing import Card, respond
from tapstack.testing.cards import PatternError, PythonCard, Rule, ScriptedCard, compile_pattern
from tapstack.testing.kit import CardKit
from tapstack.testing.replay import ReplayCard
from terminal.readers.mock import MockReader
from terminal.tap import tap
from terminal.trace import TraceRecorder, parse_trace

UID = bytes.fromhex("04A1B2C3D4E5F6")
kit = CardKit()


@pytest.mark.parametrize("pattern, command, matches", [
    ("00A40400*", "00A4040007A000000003101000", True),
    ("00A40400*", "00A40400", True),
    ("00A40400*", "00A40C00", False),
    ("80??0000*", "80540000", True),
    ("80??0000*", "00540000", False),
    ("00 B2 01 0C 00", "00B2010C00", True),
    ("00B2010C", "00B2010C00", False),  # no '*': the whole command
])
def test_patterns(pattern, command, matches):
    assert bool(compile_pattern(pattern).fullmatch(command)) is matches


@pytest.mark.parametrize("pattern, message", [("00A4G0", "neither hex"), ("00A", "odd number"), ("0*", "whole bytes"),
                                              ("", "empty")])
def test_bad_patterns_say_why(pattern, message):
    with pytest.raises(PatternError, match=message):
        compile_pattern(pattern)


def test_first_matching_rule_answers_lists_in_turn_then_default_and_uid():
    card = ScriptedCard(UID, [("00A40400*", "6A82"), ("80CA*", ["01 9000", "02 9000"])], default="6D00")
    assert card.process(bytes.fromhex("00A4040002AABB00")) == bytes.fromhex("6A82")
    assert [card.process(bytes.fromhex("80CA9F7F00")) for _ in range(3)] == [bytes.fromhex(h) for h in
                                                                             ("019000", "029000", "029000")]
    assert card.process(bytes.fromhex("00B2010C00")) == bytes.fromhex("6D00")
    assert card.process(bytes.fromhex("FFCA000000")) == UID + b"\x90\x00"
    assert len(card.commands) == 6


def test_a_function_answers_and_its_failures_become_6F00():
    def answer(command: bytes) -> bytes:
        if command[1] == 0x01:
            raise RuntimeError("boom")
        return command[2:4] + b"\x90\x00"

    card = ScriptedCard(UID, [("80*", answer), ("81*", lambda c: b"\x90")])
    assert card.process(bytes.fromhex("80021234")) == bytes.fromhex("12349000")
    assert card.process(bytes.fromhex("80010000")) == bytes.fromhex("6F00")
    assert card.process(bytes.fromhex("81000000")) == bytes.fromhex("6F00")
    assert card.errors[0].startswith("80010000: test_cards.py:")
    assert card.errors[0].endswith(" in answer: RuntimeError: boom")
    assert "no status word" in card.errors[1]


def test_a_scripted_purse_impostor_is_an_error_not_a_crash():
    card = kit.scripted({"00A40400*": "6F03840100 9000"})
    outcome, pending = tap(MockReader(card).wait_for_card(1), kit.context())
    assert (outcome.kind, outcome.reason, pending) == ("error", "garbage", ())


def record(card, ctx, sessions=1) -> list:
    out = io.StringIO()
    reader = MockReader(card)
    for n in range(1, sessions + 1):
        reader.present(card)
        tap(TraceRecorder(reader.wait_for_card(1), out, number=n), ctx)
        reader.remove()
    return parse_trace(out.getvalue().splitlines())


def test_a_replayed_emv_tap_reads_like_the_card_with_its_masked_number():
    trace = record(kit.emv(pan="5555555555554444"), kit.context())
    replay = ReplayCard(trace)
    outcome, _ = tap(MockReader(replay).wait_for_card(1), kit.context())  # a fresh unpredictable number
    assert (outcome.kind, outcome.reason) == ("emv", "token") and replay.mismatches == []
    assert outcome.token != kit.pan_token("5555555555554444")  # the masked number's token, not the card's


def test_exact_matching_refuses_a_changed_command_with_6D00_and_says_so():
    trace = record(kit.emv(), kit.context())
    replay = ReplayCard(trace, match="exact")
    outcome, _ = tap(MockReader(replay).wait_for_card(1), kit.context())
    assert outcome.kind == "error" and replay.answered == 3  # SELECT purse, PPSE, application; GPO differs
    assert "got 80A80000" in replay.mismatches[0] and "the trace has 80A80000" in replay.mismatches[0]


def test_an_unknown_select_is_6A82_and_sessions_follow_each_other():
    ctx = kit.context(nonce=b"\x01" * 8)
    demo = kit.purse(balance=500)
    replay = ReplayCard(record(demo.card, ctx, sessions=2), match="exact")
    reader = MockReader(replay)
    balances = []
    for _ in range(3):  # session 1, session 2, then session 1 again
        reader.present(replay)
        outcome, _ = tap(reader.wait_for_card(1), ctx)
        reader.remove()
        balances.append(outcome.balance_after)
    assert balances == [300, 100, 300]
    assert replay.process(bytes.fromhex("00A4040005A000000001")) == bytes.fromhex("6A82")
    assert replay.process(bytes.fromhex("80EE000000")) == bytes.fromhex("6D00")
    assert len(replay.mismatches) == 2


# --- rules with regular expressions, states and scripts; T=0; cards in Python; images ---------

def answers(card, *commands):
    return [card.process(bytes.fromhex(c)).hex().upper() for c in commands]


def test_regex_rules_match_as_keyples_simulated_commands():
    card = ScriptedCard(UID, [({"regex": "00A40400..F0.*"}, "9000"), ({"regex": "80ca9f7f00"}, "01 9000")])
    assert answers(card, "00A4040002F00100", "00A4040002A00100", "80CA9F7F00") == ["9000", "6D00", "019000"]


def test_states_choose_the_answer_and_then_moves_the_card_on():
    card = ScriptedCard(UID, [Rule.of("0020*", "9000", state="locked", then="open"),
                              Rule.of("80B0*", "6982", state="locked"), Rule.of("80B0*", "0102 9000", state="open")],
                        state="locked")
    assert answers(card, "80B0000002", "0020000104 31323334", "80B0000002") == ["6982", "9000", "01029000"]
    assert card.state == "open" and card.image_state() == {"used": [1, 1, 1], "state": "open"}


def test_an_ordered_script_answers_in_turn_and_keeps_what_came_out_of_turn():
    card = ScriptedCard(UID, [Rule.of("00A4*", "9000"), Rule.of("80CA*", "01 9000", times=2)], ordered=True)
    assert answers(card, "00A4040001F0", "80CA000000", "FFCA000000", "80CA000000") == \
        ["9000", "019000", UID.hex().upper() + "9000", "019000"]
    assert answers(card, "80CA000000") == ["6D00"]
    assert card.mismatches == ["80CA000000: the script had ended (all 2 commands answered)"]
    card = ScriptedCard(UID, [Rule.of("00A4*", "9000"), Rule.of("80CA*", "01 9000")], ordered=True)
    assert answers(card, "80CA000000") == ["6D00"]
    assert card.mismatches == ["80CA000000: the script expected 00A4*"]


class Points(Card):
    protocol = "T=0"

    def __init__(self, points=7):
        self.points = points
        self.sessions = 0

    def reset(self):
        self.sessions += 1

    def process(self, command):
        if command.ins == 0xB0:
            return respond(0x9000, self.points.to_bytes(2, "big"))
        if command.ins == 0xE0:
            self.points += command.data[0]
            return respond(0x9000, self.points.to_bytes(2, "big"))
        if command.ins == 0xEE:
            raise ValueError("no such thing")
        return respond(0x6D00)


def test_a_t0_card_answers_61xx_and_6cxx_and_the_reader_completes_both():
    card = PythonCard(Points())
    assert card.atr == bytes.fromhex("3B00") and card.protocol == "T=0"
    card.power_on()
    assert answers(card, "80E0000001 03 02", "00C0000002") == ["6102", "000A9000"]
    assert answers(card, "80B0000000", "80B0000002") == ["6C02", "000A9000"]
    assert card.program.points == 10  # the command asked again with the right Le did not run twice
    reader = MockReader(PythonCard(Points()))
    session = reader.wait_for_card(1)
    assert session.transmit(bytes.fromhex("80E0000001 05 02")) == bytes.fromhex("000C9000")
    assert session.transmit(bytes.fromhex("80B0000000")) == bytes.fromhex("000C9000")
    assert [x.command.hex().upper() for x in reader.transcript] == ["80E000000105 02".replace(" ", ""), "00C0000002",
                                                                     "80B0000000", "80B0000002"]


def test_a_python_card_gets_parsed_commands_the_uid_and_its_failures_are_6F00():
    program = Points()
    card = PythonCard(program, protocol="T=1", uid="04C0FFEE123456")
    card.power_on()
    card.power_on()
    assert program.sessions == 2
    assert answers(card, "FFCA000000", "80B0000002", "80", "80EE0000") == \
        ["04C0FFEE1234569000", "00079000", "6700", "6F00"]
    assert len(card.errors) == 1 and card.errors[0].startswith("80EE0000: test_cards.py:")
    assert card.errors[0].endswith("in process: ValueError: no such thing")


def test_a_card_image_goes_on_where_the_card_was(tmp_path):
    from tapstack.testing.cardfile import load_card, save_card

    (tmp_path / "points.py").write_text(
        "from tapstack.testing import Card, respond\n\n"
        "class Points(Card):\n"
        "    def __init__(self, points=0):\n        self.points = points\n\n"
        "    def process(self, command):\n"
        "        self.points += 1\n        return respond(0x9000, self.points.to_bytes(2, 'big'))\n")
    (tmp_path / "points.card.yaml").write_text("type: python\nclass: points.py:Points\noptions: {points: 5}\n")
    built = load_card(tmp_path / "points.card.yaml")
    assert answers(built.card, "80000000", "80000000") == ["00069000", "00079000"]
    (tmp_path / "elsewhere").mkdir()
    save_card(built, tmp_path / "elsewhere" / "after.card.yaml")
    text = (tmp_path / "elsewhere" / "after.card.yaml").read_text()
    assert "class: ../points.py:Points" in text and "image:\n  points: 7" in text
    assert answers(load_card(tmp_path / "elsewhere" / "after.card.yaml").card, "80000000") == ["00089000"]

    scripted = tmp_path / "s.card.yaml"
    scripted.write_text("type: scripted\nstate: a\nanswers:\n  - {command: '80*', state: a, then: b, answer: '9000'}\n"
                        "  - {command: '80*', state: b, answer: '6985'}\n")
    built = load_card(scripted)
    assert answers(built.card, "80000000", "80000000") == ["9000", "6985"]
    save_card(built, tmp_path / "s2.card.yaml")
    assert answers(load_card(tmp_path / "s2.card.yaml").card, "80000000") == ["6985"]

    purse = tmp_path / "p.card.yaml"
    purse.write_text("type: purse\nbalance: 500\n")
    built = load_card(purse)
    outcome, _ = tap(MockReader(built.card).wait_for_card(1), kit.context(fare=200))
    assert outcome.reason == "paid" and built.purse.balance == 300
    save_card(built, tmp_path / "p2.card.yaml")
    again = load_card(tmp_path / "p2.card.yaml")
    assert again.purse.balance == 300 and again.purse.store.state.counter == 1
