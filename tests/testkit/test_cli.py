"""`tapstack test scenarios` and `tapstack terminal trace`: exit codes and one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tapstack.cli import main
from tapstack.testing.fields import Stage
from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import find_scenarios, load_scenario
from terminal.trace import mask_pan, read_trace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def invoke(*args):
    return CliRunner().invoke(main, list(args))


TOKEN_KEY = ("--token-key", "000102030405060708090a0b0c0d0e0f")


def test_the_examples_pass_over_the_mock():
    result = invoke("test", "scenarios", str(EXAMPLES), "--transport", "mock")
    assert result.exit_code == 0, result.output
    n = len(find_scenarios(EXAMPLES))
    assert n >= 10 and result.output.splitlines()[-1] == f"{n} passed, 0 failed"
    assert "ok    torn debit recovered [mock] 7 steps" in result.output


def test_verbose_lists_each_step_with_its_line():
    result = invoke("test", "scenarios", str(EXAMPLES / "scenario_torn_debit.yaml"), "-v")
    assert result.exit_code == 0, result.output
    assert "ok  line 10   - tear_after: 2" in result.output


def test_a_failing_and_a_broken_file_exit_1_with_the_reasons(tmp_path):
    (tmp_path / "scenario_fail.yaml").write_text("cards:\n  m: {type: uid, uid: '04C0FFEE123456'}\nsteps:\n"
                                                 "  - present: m\n  - expect: {outcome: deny}\n")
    (tmp_path / "scenario_broken.yaml").write_text("cards:\n  m: {type: uid}\nsteps: [remove]\n")
    result = invoke("test", "scenarios", str(tmp_path))
    assert result.exit_code == 1
    assert f"ERROR {tmp_path / 'scenario_broken.yaml'}:2: card 'm' of type uid needs 'uid'" in result.output
    assert f"{tmp_path / 'scenario_fail.yaml'}:5: step 'expect' failed" in result.output
    assert result.output.splitlines()[-1] == "0 passed, 1 failed, 1 file(s) with errors"


def test_no_scenarios_and_bad_options_are_one_line_errors(tmp_path):
    result = invoke("test", "scenarios", str(tmp_path))
    assert result.exit_code == 1 and "no scenario files" in result.output
    result = invoke("test", "scenarios", str(EXAMPLES), "-t", "usb")
    assert result.exit_code == 2 and "unknown transport 'usb'" in result.output


def test_trace_without_a_card_or_with_a_bad_reader_says_so(tmp_path):
    result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", "mock", "--timeout", "0.1", "--out", str(tmp_path / "t"))
    assert result.exit_code == 1 and "no card on mock within 0.1 s" in result.output
    result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", "serial:/dev/x", "--out", str(tmp_path / "t"))
    assert result.exit_code == 1 and "unknown reader 'serial:/dev/x'" in result.output
    result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", "mock", "--out", str(tmp_path / "t"), "--nonce", "0102")
    assert result.exit_code == 2 and "--nonce is 8 bytes" in result.output
    assert "Traceback" not in result.output
    result = invoke("terminal", "trace", "--reader", "mock", "--out", str(tmp_path / "t"))
    assert result.exit_code == 2 and "Missing option '--token-key'" in result.output


@pytest.mark.nfcpy_udp
def test_record_a_tap_over_nfcpy_then_replay_it_in_a_scenario(tmp_path, nfc_udp_port):
    from wallet.emv_card import emv_card
    from wallet.transports.nfc_udp import NfcUdpCard

    out = tmp_path / "visa.trace.jsonl"
    with NfcUdpCard(emv_card(bytes.fromhex("04112233445566"), pan="5555555555554444"), nfc_udp_port):
        result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", f"udp:127.0.0.1:{nfc_udp_port}", "--out", str(out),
                        "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "emv accept token: 5 exchanges written" in result.output
    text = out.read_text()
    assert "5555555555554444" not in text and mask_pan("5555555555554444") in text
    session, = read_trace(out)
    assert session.uid == bytes.fromhex("04112233445566") and len(session.exchanges) == 5
    with NfcUdpCard(emv_card(bytes.fromhex("04112233445566"), pan="5555555555554444"), nfc_udp_port):
        result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", f"udp:127.0.0.1:{nfc_udp_port}", "--out", str(out),
                        "--timeout", "10", "--append")
    assert result.exit_code == 0 and "(session 2)" in result.output, result.output
    assert [len(s.exchanges) for s in read_trace(out)] == [5, 5]
    scenario = tmp_path / "scenario_replay.yaml"
    scenario.write_text("cards:\n  v: {type: replay, trace: visa.trace.jsonl}\nsteps:\n  - present: v\n"
                        "  - expect: {outcome: accept, kind: emv}\n")
    result = run_scenario(load_scenario(scenario), "mock", Stage())
    assert result.ok, result.report()
