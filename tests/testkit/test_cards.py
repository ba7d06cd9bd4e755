"""Scripted cards (patterns, answers in turn, functions) and replayed traces as cards."""
from __future__ import annotations

import io

import pytest

from tapstack.testing.cards import PatternError, ScriptedCard, compile_pattern
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
    assert card.errors[0] == "80010000: test_cards.py:52 in answer: RuntimeError: boom"
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
