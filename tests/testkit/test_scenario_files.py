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
