"""Scenario files: what a broken file says (file, line, the valid keys), and what a failing step shows."""
from __future__ import annotations

import textwrap

import pytest

from tapstack.testing.fields import Stage
from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import ScenarioError, load_scenario, parse_scenario

GOOD = """\
cards:
  alice: {type: purse, balance: 500}
readers:
  validator: {fare: 200}
steps:
  - present: {card: alice, reader: validator}
  - expect: {outcome: accept, balance: 300}
"""


def error_of(text: str, tmp_path, name="scenario_x.yaml") -> ScenarioError:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert str(e.value).startswith(str(path))
    return e.value


@pytest.mark.parametrize("text, line, words", [
    (GOOD.replace("- expect:", "- expcet:"), 7, ["unknown key 'expcet'", "did you mean 'expect'?", "present, expect"]),
    (GOOD.replace("balance: 500}", "balanse: 500}"), 2, ["did you mean 'balance'?", "valid keys are type, balance"]),
    (GOOD.replace("card: alice, reader", "card: alcie, reader"), 6, ["unknown card 'alcie'", "did you mean 'alice'?"]),
    (GOOD.replace("reader: validator}", "reader: gate}"), 6, ["unknown reader 'gate'", "the readers are validator"]),
    (GOOD.replace("balance: 500}", "balance: lots}"), 2, ["balance must be a whole number", "str 'lots'"]),
    (GOOD.replace("fare: 200", "fare: 2.5"), 4, ["fare must be a whole number"]),
    (GOOD.replace("type: purse", "type: pures"), 2, ["card type 'pures' is not known", "did you mean 'purse'?"]),
    (GOOD.replace("outcome: accept", "outcome: accepted"), 7, ["outcome 'accepted'", "accept, deny, error"]),
    (GOOD.replace("  - expect", "  - expect: {}\n  - expect"), 7, ["expect needs at least one of"]),
    (GOOD + "  - tear_after: 0\n", 8, ["tear_after must be 1..1000"]),
    (GOOD + "  - tear_after: {n: 1, readr: validator}\n", 8, ["did you mean 'reader'?"]),
    (GOOD + "  - remov\n", 8, ["unknown step 'remov'", "did you mean 'remove'?"]),
    (GOOD.replace("validator: {fare: 200}", "validator: {fare: 200, deny: [bob]}"), 4, ["denies 'bob'"]),
    (GOOD + "  - present: {card: alice, reader: validator\n", 8, ["not valid YAML", "'{' on this line is never closed"]),
    (GOOD.replace("readers:", "cards:"), 3, ["'cards' given twice (first at line 1)"]),
    ("cards: {}\nsteps: []\n", 2, ["steps must be a list"]),
    ("cards:\n  x: {type: replay, trace: missing.jsonl}\nsteps: [remove]\n", 2, ["missing.jsonl: cannot read"]),
    ("cards:\n  x: {type: scripted, answers: {'00A4*': 'ZZ'}}\nsteps: [remove]\n", 2, ["'Z' is not a hex digit"]),
    ("cards:\n  x: {type: scripted, answers: {'00A*': '9000'}}\nsteps: [remove]\n", 2, ["'*' must stand for whole bytes"]),
    ("cards:\n  x: {type: uid, uid: 12345678}\nsteps: [remove]\n", 2, ["hex text in quotes"]),
    ("cards:\n  x: {type: emv, pan: '4242424242424241'}\nsteps: [remove]\n", 2, ["Luhn"]),
    ("transports: [mock, usb]\nsteps: [remove]\n", 1, ["unknown transport 'usb'"]),
])
def test_errors_name_the_file_and_line(text, line, words, tmp_path):
    e = error_of(text, tmp_path)
    assert e.line == line, str(e)
    for word in words:
        assert word in e.message, str(e)


def test_which_reader_when_there_are_two(tmp_path):
    text = GOOD.replace("validator: {fare: 200}", "front: {}\n  back: {}").replace(", reader: validator", "")
    assert "which reader? there are front, back" in error_of(text, tmp_path).message


def test_defaults_one_reader_and_bare_steps(tmp_path):
    s = parse_scenario("cards:\n  m: {type: uid, uid: '04C0FFEE123456'}\nsteps:\n  - present: m\n  - remove\n"
                       "  - wait\n  - wait: 0.01\n  - slow: 0\n", tmp_path / "scenario_d.yaml")
    assert list(s.readers) == ["reader"] and s.readers["reader"].fare == 200
    assert [st.action for st in s.steps] == ["present", "remove", "wait", "wait", "slow"]
    assert [st.line for st in s.steps] == [4, 5, 6, 7, 8]
    result = run_scenario(s, "mock", Stage())
    assert result.ok, result.report()


def test_several_actions_in_one_item_run_in_the_order_written(tmp_path):
    s = parse_scenario(GOOD.replace("  - expect", "    expect"), tmp_path / "scenario_two.yaml")
    assert [(st.action, st.line) for st in s.steps] == [("present", 6), ("expect", 7)]


def test_a_failing_step_shows_file_line_expected_seen_and_the_masked_apdus(tmp_path):
    path = tmp_path / "scenario_fail.yaml"
    path.write_text("cards:\n  visa: {type: emv, pan: '5555555555554444'}\nsteps:\n  - present: visa\n"
                    "  - expect: {outcome: deny, kind: emv}\n  - remove\n")
    result = run_scenario(load_scenario(path), "mock", Stage())
    assert not result.ok and len(result.steps) == 2  # stops at the failing step
    report = result.report()
    assert report.startswith(f"{path}:5: step 'expect' failed")
    assert "- expect: {outcome: deny, kind: emv}" in report
    assert "outcome: expected deny, seen accept" in report and "kind: expected" not in report
    assert ">> 00A404000E325041592E5359532E4444463031" in report  # SELECT PPSE
    assert "5555555555554444" not in report and "555555******4444" in report


def test_expectations_on_balance_token_and_pending(tmp_path):
    text = ("cards:\n  a: {type: purse, balance: 100}\n  m: {type: uid, uid: '04C0FFEE123456'}\nsteps:\n"
            "  - present: a\n  - expect: {balance: 99}\n")
    result = run_scenario(parse_scenario(text, tmp_path / "s.yaml"), "mock", Stage())
    assert "balance: expected 99, seen 100" in result.report()
    text = text.replace("present: a\n  - expect: {balance: 99}", "present: m\n  - expect: {token: a, pending: 1}")
    report = run_scenario(parse_scenario(text, tmp_path / "s.yaml"), "mock", Stage()).report()
    assert "token: expected the token of 'a', seen uid_" in report and "pending: expected 1, seen 0" in report
    text = text.replace("token: a, pending: 1", "balance: 1")
    assert "balance: card 'm' is not a purse" in run_scenario(parse_scenario(text, tmp_path / "s.yaml"), "mock",
                                                               Stage()).report()


def test_a_strict_replay_fails_on_commands_the_trace_lacks(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"trace": "tapstack-apdu", "version": 1, "uid": "04C0FFEE123456"}\n'
                                      '{"command": "00A40400AAAA", "response": "9000"}\n')
    path = tmp_path / "scenario_r.yaml"
    path.write_text("cards:\n  r: {type: replay, trace: t.jsonl}\nsteps:\n  - present: r\n")
    report = run_scenario(load_scenario(path), "mock", Stage()).report()
    assert f"{path}:4: step 'present' failed" in report and "the trace does not hold" in report
    path.write_text("cards:\n  r: {type: replay, trace: t.jsonl, strict: false}\nsteps:\n  - present: r\n"
                    "  - expect: {kind: uid}\n")
    assert run_scenario(load_scenario(path), "mock", Stage()).ok


def test_more_pcscd_readers_than_vpcd_slots_is_a_clear_error(tmp_path):
    class Full(Stage):
        def pcscd(self):
            from wallet.pcscd import Pcscd, VpcdReader

            return Pcscd([VpcdReader("x", 1, 0)], pid=None)

    stage = Full()
    stage._slots_in_use.add(0)
    s = parse_scenario("readers:\n  front: {}\nsteps: [remove]\n", tmp_path / "scenario_p.yaml")
    result = run_scenario(s, "pcscd+vpcd", stage)
    assert not result.ok and result.report().startswith(
        f"{tmp_path / 'scenario_p.yaml'}:2: reader 'front' cannot be opened over pcscd+vpcd: "
        "pcscd serves 1 vpcd readers and all are in use")


def test_a_scripted_card_answering_by_a_python_function_next_to_the_scenario(tmp_path):
    (tmp_path / "answers.py").write_text(
        "def answer(command):\n"
        "    return bytes.fromhex('6A82') if command[1] == 0xA4 else bytes.fromhex('04C0FFEE123456' '9000')\n")
    path = tmp_path / "scenario_f.yaml"
    path.write_text("cards:\n  f: {type: scripted, function: answers.py:answer}\nsteps:\n  - present: f\n"
                    "  - expect: {kind: uid, token: f}\n")
    result = run_scenario(load_scenario(path), "mock", Stage())
    assert result.ok, result.report()
    path.write_text("cards:\n  f: {type: scripted, function: answers.py:nothing}\nsteps: [remove]\n")
    assert "function 'answers.py:nothing': answers.py has no 'nothing'" in error_of(path.read_text(), tmp_path).message


def test_a_torn_debit_at_the_validator_program_is_recovered_and_journalled(tmp_path):
    text = ("cards:\n  c: {type: purse, balance: 500}\nreaders:\n  bus: {program: validator, fare: 200}\nsteps:\n"
            "  - tear_after: 2\n  - present: c\n  - expect: {outcome: error, reason: card_removed, pending: 1, balance: 300}\n"
            "  - present: c\n  - expect: {outcome: accept, reason: recovered, pending: 0, balance: 300, journalled: 2}\n"
            "  - advance: 5\n  - present: c\n  - expect: {reason: already_tapped, message: Already tapped}\n")
    result = run_scenario(parse_scenario(text, tmp_path / "scenario_v.yaml"), "mock", Stage())
    assert result.ok, result.report()
    failing = text.replace("message: Already tapped", "message: Paid")
    report = run_scenario(parse_scenario(failing, tmp_path / "scenario_v.yaml"), "mock", Stage()).report()
    assert "scenario_v.yaml:13: step 'expect' failed" in report and "message: expected Paid, seen Already tapped" in report


@pytest.mark.parametrize("reader, words", [
    ("{route: '7'}", "'route' is for readers with program: validator"),
    ("{program: validator, nonce: '0102030405060708'}", "the validator draws its own nonces"),
    ("{program: validtor}", "did you mean 'validator'?"),
])
def test_validator_keys_belong_to_validator_readers(reader, words, tmp_path):
    e = error_of(f"readers:\n  bus: {reader}\nsteps: [remove]\n", tmp_path)
    assert e.line == 2 and words in e.message


def test_a_bare_step_that_needs_a_value_says_so(tmp_path):
    assert "step 'advance' needs a value" in error_of("steps: [advance]\n", tmp_path).message


# --- errors a newcomer can act on ----------------------------------------------------------

def errors_of(text: str, tmp_path, name="scenario_x.yaml") -> list:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    return [(x.line, x.message) for x in getattr(e.value, "errors", [e.value])]


@pytest.mark.parametrize("text, line, words", [
    ("steps:\n  - present: {card: a\n  - remove\n", 2, "the '{' on this line is never closed"),
    ("steps: [remove\n", 1, "the '[' on this line is never closed"),
    ("scenario: \"fare\nsteps: [remove]\n", 1, "the quote opened on this line is never closed"),
    ("steps:\n\t- remove\n", 2, "a tab character: YAML indents with spaces only"),
    ("cards:\n  s: {type: scripted, default: *}\nsteps: [remove]\n", 2, "a value starting with '*' must be in quotes"),
    ("scenario: fare: 2\nsteps: [remove]\n", 1, "a ':' where YAML expects none"),
    ("cards:\n  a: {type: uid, uid: '04C0FFEE123456'}\n b: {type: uid}\nsteps: [remove]\n", 3,
     "this line's indentation does not fit the lines above it"),
])
def test_yaml_syntax_errors_in_the_kits_words_at_the_line_to_look_at(text, line, words, tmp_path):
    (found_line, message), = errors_of(text, tmp_path)
    assert found_line == line and message.startswith("not valid YAML: ") and words in message, message


@pytest.mark.parametrize("text, line, words", [
    ("cards:\n  rider: {type:purse, balance: 500}\nsteps: [remove]\n", 2,
     "'type:purse' needs a space after the colon: write 'type: purse'"),
    ("cards:\n  rider:\n    type:purse\nsteps: [remove]\n", 2, "write 'type: purse'"),
    ("cards:\n  rider: {type: purse}\nsteps:\n  - present:rider\n", 4, "write 'present: rider'"),
    ("cards:\n  rider: {type: purse, balance:500}\nsteps: [remove]\n", 2, "write 'balance: 500'"),
])
def test_a_missing_space_after_a_colon_is_pointed_out(text, line, words, tmp_path):
    (found_line, message), = errors_of(text, tmp_path)
    assert found_line == line and words in message, message


@pytest.mark.parametrize("expect, words", [
    ("{reason: payed}", "reason 'payed' is not known: did you mean 'paid'?"),
    ("{reason: insufficient_funds}", "did you mean 'insufficient_balance'?"),
    ("{message: Balance to low}", "did you mean 'Balance too low'?"),
    ("{kind: pures}", "did you mean 'purse'?"),
    ("{outcome: denied}", "did you mean 'deny'?"),
])
def test_every_enumerated_value_is_checked_at_load(expect, words, tmp_path):
    (line, message), = errors_of(GOOD.replace("{outcome: accept, balance: 300}", expect), tmp_path)
    assert line == 7 and words in message, message


def test_the_reasons_known_are_every_reason_the_terminal_gives():
    """The kit checks reason: against terminal.card.MESSAGES; every reason a tap or the
    validator can give must be there (read from their source, so a new one cannot be missed)."""
    import ast
    from pathlib import Path

    from terminal.card import MESSAGES

    root = Path(__file__).resolve().parents[2] / "terminal"
    given = set()
    for name in ("tap.py", "card.py"):
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                called = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if called in ("_error", "deny", "refusal", "repeat_refusal"):
                    given.add(node.args[0].value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "TapOutcome" and len(node.args) > 2 \
                    and isinstance(node.args[2], ast.Constant):
                given.add(node.args[2].value)
    given.discard("purse")  # repeat_refusal's first argument is an identity, not a reason
    assert len(given) > 15 and given - set(MESSAGES) <= {c for c in given if not c.islower()}


GENERIC = """\
cards:
  club: {type: scripted, answers: {"00A4*": "9000", "80CA*": "0102 9000"}}
steps:
  - present: club
  - select: "F0434C554201"
  - send: {apdu: "80CA000002", capture: {points: data}}
"""


@pytest.mark.parametrize("extra, line, words", [
    ("  - send: '80CA{pionts}00'\n", 7, "variable 'pionts' is not set before this step: did you mean 'points'?"),
    ("  - send: '80CA0'\n", 7, "odd number of hex digits (5)"),
    ("  - send: '80CA'\n", 7, "a command APDU has at least 4 bytes"),
    ("  - send: {apdu: '80CA0000 02', data: '01'}\n", 7, "apdu is the 4-byte header"),
    ("  - send: {apdu: '80CA000002', expect: {sw: '9G00'}}\n", 7, "'G' is neither hex"),
    ("  - send: {apdu: '80CA000002', expect: {reason: paid}}\n", 7, "'reason' checks a tap: write it in an expect step"),
    ("  - send: {apdu: '80CA000002', capture: {x: 'data[0]'}}\n", 7, "'data[0]' is not a source"),
    ("  - send: {apdu: '80CA000002', expect: {tlv: {'6F/XY': '*'}}}\n", 7, "'X' is not a hex digit"),
    ("  - expect: {sw: '9000'}\n", 7, "'sw' checks the answer of a select or send: write it on that step"),
    ("  - expect: {outcome: accept}\n", 7, "'outcome' checks a tap, but the reader runs no program"),
    ("  - select: '00112233445566778899AABBCCDDEEFF00'\n", 7, "an AID is 1 to 16 bytes"),
    ("  - call: missing.py:check\n", 7, "function 'missing.py:check': no file"),
    ("  - sned: '80CA000002'\n", 7, "unknown key 'sned' in a step: did you mean 'send'?"),
])
def test_the_generic_steps_are_checked_at_load(extra, line, words, tmp_path):
    errors = errors_of(GENERIC + extra, tmp_path)
    assert [(at, words in message) for at, message in errors] == [(line, True)], errors


def test_scripted_states_and_python_classes_are_checked_at_load(tmp_path):
    (tmp_path / "club.py").write_text("class NoProcess:\n    pass\n\nclass Club:\n    def __init__(self, points=0):\n"
                                      "        pass\n    def process(self, command):\n        return b'\\x90\\x00'\n")
    errors = errors_of("""\
        cards:
          a:
            type: scripted
            state: new
            answers:
              - {command: "80*", state: nwe, answer: "9000"}
          b:
            type: scripted
            answers:
              - {command: "80*", state: new, then: old, answer: "9000"}
          c: {type: python, class: "club.py:NoProcess"}
          d: {type: python, class: "club.py:Club", options: {pionts: 3}}
          e: {type: python, class: "club.py:Missing"}
          f: {type: scripted, answers: [{command: "80*", regex: "80.*", answer: "9000"}]}
        steps: [remove]
        """, tmp_path)
    assert [line for line, _ in errors] == [6, 7, 11, 12, 13, 14]
    words = ["state 'nwe' is never reached: did you mean 'new'?", "its rules name states (new, old): say which it starts in",
             "must be a class with process(command)", "options do not fit club.py:Club: got an unexpected keyword argument 'pionts'",
             "club.py has no 'Missing'", "a rule matches with command: (hex pattern) or regex:"]
    for (_, message), word in zip(errors, words):
        assert word in message, message


def test_every_error_of_the_file_comes_at_once_in_line_order(tmp_path):
    errors = errors_of("""\
        scenario: many mistakes
        cards:
          a: {type: purse, balanse: 5}
          b: {type: uid, uid: "04C0FFE"}
          c: {type: pures}
        readers:
          r: {fare: free, progam: tap}
        steps:
          - present: d
          - expect: {outcome: accepted, reason: payed}
          - tear_after: 0
          - remov
        """, tmp_path)
    assert [line for line, _ in errors] == [3, 4, 5, 7, 7, 9, 10, 10, 11, 12]
    assert "did you mean 'program'?" in errors[3][1] + errors[4][1] and "unknown card 'd'" in errors[5][1]


def test_a_generic_scenario_defaults_to_a_reader_without_program(tmp_path):
    s = parse_scenario(GENERIC, tmp_path / "scenario_g.yaml")
    assert s.readers["reader"].program == "none"
    assert parse_scenario(GOOD, tmp_path / "scenario_t.yaml").readers["validator"].program == "tap"
    s = parse_scenario(GENERIC.replace("steps:", "readers:\n  r: {program: tap}\nsteps:") + "  - expect: {outcome: error}\n",
                       tmp_path / "scenario_m.yaml")
    assert s.readers["r"].program == "tap"
