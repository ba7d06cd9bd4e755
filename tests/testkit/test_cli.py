"""`tapstack test scenarios` and `tapstack terminal trace` as CI and a newcomer meet them:
exit codes, JUnit XML, JSON, progress, colour, one-line errors."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from tapstack.cli import main
from tapstack.testing.fields import Stage
from tapstack.testing.runner import run_scenario
from tapstack.testing.scenario import find_scenarios, load_scenario
from terminal.trace import DEMO_ISSUER_KEY, mask_pan, read_trace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
TOKEN_KEY = ("--token-key", "000102030405060708090a0b0c0d0e0f")
PASSING = "cards:\n  m: {type: uid, uid: '04C0FFEE123456'}\nsteps:\n  - present: m\n  - expect: {outcome: accept}\n"
FAILING = PASSING.replace("outcome: accept", "outcome: deny")
BROKEN = "cards:\n  m: {type: uid}\nsteps: [remove]\n"


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_the_examples_pass_over_the_mock_with_n_of_m_progress():
    result = invoke("test", "scenarios", EXAMPLES, "--transport", "mock")
    assert result.exit_code == 0, result.output
    n = len(find_scenarios(EXAMPLES))
    lines = result.output.splitlines()
    assert n >= 10 and lines[-1].startswith(f"{n} passed, 0 failed in ")
    assert any(line.startswith(f"ok    {n:>2} of {n}  ") for line in lines)
    assert any(line.startswith(" 1 of ") for line in (x[6:] for x in lines))
    assert "torn debit recovered [mock] 7 steps" in result.output
    assert "\x1b[" not in result.output  # not a terminal: no colour


def test_verbose_lists_each_step_with_its_line():
    result = invoke("test", "scenarios", EXAMPLES / "scenario_torn_debit.yaml", "-v")
    assert result.exit_code == 0, result.output
    assert "ok  line 10   - tear_after: 2" in result.output


@pytest.mark.parametrize("files, code, last", [
    ({"scenario_ok.yaml": PASSING}, 0, "1 passed, 0 failed"),
    ({"scenario_ok.yaml": PASSING, "scenario_fail.yaml": FAILING}, 1, "1 passed, 1 failed"),
    ({"scenario_fail.yaml": FAILING, "scenario_broken.yaml": BROKEN}, 2, "0 passed, 1 failed, 1 file(s) with errors"),
    ({"notes.yaml": PASSING}, 3, "0 passed, 0 failed"),
    ({"scenario_nfc.yaml": "transports: [nfcpy]\n" + PASSING}, 3, "0 passed, 0 failed"),
])
def test_exit_codes_say_passed_failed_invalid_or_nothing_to_run(files, code, last, tmp_path):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = invoke("test", "scenarios", tmp_path)
    assert result.exit_code == code, result.output + result.stderr
    assert result.output.splitlines()[-1].startswith(last)
    if code == 3:
        assert "nothing to run" in result.output
    if code == 2:
        assert f"ERROR {tmp_path / 'scenario_broken.yaml'}:2: card 'm' of type uid needs 'uid'" in result.output


def test_a_usage_error_exits_2_in_one_line(tmp_path):
    result = invoke("test", "scenarios", EXAMPLES, "-t", "usb")
    assert result.exit_code == 2 and "unknown transport 'usb'" in result.stderr
    result = invoke("test", "scenarios", tmp_path / "missing.yaml")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_every_error_of_a_file_is_listed_in_one_run(tmp_path):
    (tmp_path / "scenario_many.yaml").write_text(
        "cards:\n  a: {type: purse, balanse: 5}\n  b: {type: uid, uid: '04C0FFE'}\nreaders:\n  r: {fare: free}\n"
        "steps:\n  - present: c\n  - expect: {outcome: accepted}\n  - expect: {reason: payed}\n")
    result = invoke("test", "scenarios", tmp_path)
    errors = [line for line in result.output.splitlines() if line.startswith("ERROR")]
    assert [e.split(":")[1] for e in errors] == ["2", "3", "5", "7", "8", "9"]
    text = "\n".join(errors)
    for words in ("did you mean 'balance'?", "odd number of hex digits (7)", "fare must be a whole number",
                  "unknown card 'c'", "did you mean 'accept'?", "did you mean 'paid'?"):
        assert words in text


def test_junit_xml_and_json_for_ci(tmp_path):
    (tmp_path / "scenario_ok.yaml").write_text(PASSING)
    (tmp_path / "scenario_fail.yaml").write_text(FAILING)
    (tmp_path / "scenario_broken.yaml").write_text(BROKEN)
    xml = tmp_path / "out" / "report.xml"
    xml.parent.mkdir()
    result = invoke("test", "scenarios", tmp_path, "--junitxml", xml, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)  # stdout is the JSON alone; the progress went to stderr
    assert "0 failed" not in result.stdout and "1 passed, 1 failed" in result.stderr
    assert (report["passed"], report["failed"], report["file_errors"], report["exit_code"]) == (1, 1, 1, 2)
    failed = next(r for r in report["results"] if not r["ok"])
    assert failed["failure"]["line"] == 5 and "outcome: expected deny, seen accept" in failed["failure"]["message"]
    assert failed["failure"]["apdus"][0]["command"].startswith("00A40400")
    assert report["errors"] == [{"file": str(tmp_path / "scenario_broken.yaml"), "line": 2,
                                 "message": "card 'm' of type uid needs 'uid'"}]
    suite = ET.parse(xml).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["scenario_fail [mock]"].find("failure").get("message").startswith("line 5: outcome: expected deny")
    assert "scenario_fail.yaml:5: step 'expect' failed" in cases["scenario_fail [mock]"].find("failure").text
    assert cases["(file)"].find("error").text.endswith("scenario_broken.yaml:2: card 'm' of type uid needs 'uid'")
    assert cases["scenario_ok [mock]"].find("failure") is None


def test_colour_on_request_and_never_with_no_color(tmp_path):
    (tmp_path / "scenario_fail.yaml").write_text(FAILING)
    coloured = invoke("test", "scenarios", tmp_path, "--color", "always")
    assert "\x1b[31m\x1b[1mFAIL" in coloured.output
    assert "\x1b[" not in invoke("test", "scenarios", tmp_path, "--color", "never").output
    from tapstack.testing.cli import use_color

    class Terminal:
        def isatty(self):
            return True

    assert use_color("auto", Terminal())
    with pytest.MonkeyPatch.context() as m:
        m.setenv("NO_COLOR", "1")
        assert not use_color("auto", Terminal()) and use_color("always", Terminal())


def test_trace_without_a_card_or_with_a_bad_reader_says_so(tmp_path):
    result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", "mock", "--timeout", "0.1", "--out", tmp_path / "t")
    assert result.exit_code == 1 and "no card on mock within 0.1 s" in result.stderr
    result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", "serial:/dev/x", "--out", tmp_path / "t")
    assert result.exit_code == 1 and "unknown reader 'serial:/dev/x'" in result.stderr
    result = invoke("terminal", "trace", *TOKEN_KEY, "--reader", "mock", "--out", tmp_path / "t", "--nonce", "0102")
    assert result.exit_code == 2 and "--nonce is 8 bytes" in result.stderr
    result = invoke("terminal", "trace", "--token-key", "0001020", "--reader", "mock", "--out", tmp_path / "t")
    assert result.exit_code == 2 and "odd number of hex digits (7)" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    result = invoke("terminal", "trace", "--reader", "mock", "--out", tmp_path / "t")
    assert result.exit_code == 2 and "Missing option '--token-key'" in result.stderr


def test_the_demo_issuer_key_of_the_terminal_is_the_wallets():
    from wallet.testcards import demo_issuer_keys

    assert list(demo_issuer_keys().values()) == [DEMO_ISSUER_KEY]


@pytest.mark.nfcpy_udp
def test_trace_exits_1_on_a_refused_purse_and_points_to_the_issuer_key(tmp_path, nfc_udp_port):
    from wallet.testcards import demo_purse_card
    from wallet.transports.nfc_udp import NfcUdpCard

    reader = ("--reader", f"udp:127.0.0.1:{nfc_udp_port}", "--timeout", "10")
    demo = demo_purse_card(balance=500)
    with NfcUdpCard(demo.card, nfc_udp_port):
        refused = invoke("terminal", "trace", *TOKEN_KEY, *reader, "--out", tmp_path / "refused.jsonl")
    assert refused.exit_code == 1 and demo.balance == 500
    assert "purse deny bad_certificate: 1 exchanges written" in refused.stdout
    assert ("the card was refused: bad_certificate (unknown issuer key 81b4ce1c); its issuer is not trusted: "
            "pass its public key with --issuer-key HEX, or --demo-issuer for the wallet emulator's test cards"
            in refused.stderr)
    with NfcUdpCard(demo.card, nfc_udp_port):
        paid = invoke("terminal", "trace", *TOKEN_KEY, *reader, "--demo-issuer", "--out", tmp_path / "paid.jsonl")
    assert paid.exit_code == 0, paid.stderr
    assert "purse accept paid: 2 exchanges written" in paid.stdout and demo.balance == 300


@pytest.mark.nfcpy_udp
def test_record_a_tap_over_nfcpy_then_replay_it_in_a_scenario(tmp_path, nfc_udp_port):
    from wallet.emv_card import emv_card
    from wallet.transports.nfc_udp import NfcUdpCard

    out = tmp_path / "visa.trace.jsonl"
    reader = ("--reader", f"udp:127.0.0.1:{nfc_udp_port}", "--out", out, "--timeout", "10")
    with NfcUdpCard(emv_card(bytes.fromhex("04112233445566"), pan="5555555555554444"), nfc_udp_port):
        result = invoke("terminal", "trace", *TOKEN_KEY, *reader)
    assert result.exit_code == 0, result.output
    assert "emv accept token: 5 exchanges written" in result.output
    text = out.read_text()
    assert "5555555555554444" not in text and mask_pan("5555555555554444") in text
    session, = read_trace(out)
    assert session.uid == bytes.fromhex("04112233445566") and len(session.exchanges) == 5
    with NfcUdpCard(emv_card(bytes.fromhex("04112233445566"), pan="5555555555554444"), nfc_udp_port):
        result = invoke("terminal", "trace", *TOKEN_KEY, *reader, "--append")
    assert result.exit_code == 0 and "(session 2)" in result.output, result.output
    assert [len(s.exchanges) for s in read_trace(out)] == [5, 5]
    scenario = tmp_path / "scenario_replay.yaml"
    scenario.write_text("cards:\n  v: {type: replay, trace: visa.trace.jsonl}\nsteps:\n  - present: v\n"
                        "  - expect: {outcome: accept, kind: emv}\n")
    result = run_scenario(load_scenario(scenario), "mock", Stage())
    assert result.ok, result.report()
